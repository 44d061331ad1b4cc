from .routing_stats import ModelRoutingStatistics, RoutingStatistics
from .routing_stats_hook import RoutingStatsHook

__all__ = ['ModelRoutingStatistics', 'RoutingStatistics', 'RoutingStatsHook']
