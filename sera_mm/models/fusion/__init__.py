from .boundary_expert import BoundaryExpert
from .context_expert import ContextExpert
from .sera_fusion import SERAFusion
from .shape_expert import ShapeExpert
from .spatial_expert import SpatialExpert

__all__ = ['BoundaryExpert', 'ContextExpert', 'SERAFusion', 'ShapeExpert', 'SpatialExpert']
