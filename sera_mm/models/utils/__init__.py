from .structures import RoutingResult, TextFeatures

__all__ = ['RoutingResult', 'TextFeatures']
