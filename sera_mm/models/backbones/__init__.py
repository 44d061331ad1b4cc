from .dinov2 import DINOv2
from .dinov2_checkpoint import convert_dinov2_official, read_dinov2_checkpoint
from .dinov2_layer import DINOv2Layer
from .pos_embed import POS_EMBED_MODES, resize_pos_embed

__all__ = [
    'DINOv2', 'DINOv2Layer', 'POS_EMBED_MODES', 'convert_dinov2_official',
    'read_dinov2_checkpoint', 'resize_pos_embed'
]
