from .epoch_seed_hook import EpochSeedHook
from .finite_check_hook import FiniteCheckHook
from .light_checkpoint_hook import LightCheckpointHook
from .referring_visualization_hook import ReferringVisualizationHook
from .routing_stats import ModelRoutingStatistics, RoutingStatistics
from .routing_stats_hook import RoutingStatsHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = [
    'EpochSeedHook', 'FiniteCheckHook', 'LightCheckpointHook', 'ModelRoutingStatistics', 'ReferringVisualizationHook',
    'RoutingStatistics', 'RoutingStatsHook', 'SafeCheckpointHook'
]
