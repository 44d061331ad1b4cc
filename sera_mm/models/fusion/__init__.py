from .boundary_expert import BoundaryExpert
from .context_expert import ContextExpert
from .local_batch_norm import LocalBatchNorm2d
from .sera_fusion import SERAFusion
from .shape_expert import ShapeExpert
from .spatial_expert import SpatialExpert

__all__ = [
    'BoundaryExpert', 'ContextExpert', 'LocalBatchNorm2d', 'SERAFusion', 'ShapeExpert',
    'SpatialExpert'
]
