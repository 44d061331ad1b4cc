from .referring_visualization_hook import ReferringVisualizationHook
from .routing_stats import ModelRoutingStatistics, RoutingStatistics
from .routing_stats_hook import RoutingStatsHook

__all__ = [
    'ModelRoutingStatistics', 'ReferringVisualizationHook', 'RoutingStatistics',
    'RoutingStatsHook'
]
