from . import (adapters, backbones, data_preprocessors, decode_heads, fusion,  # noqa: F401
               losses, necks, segmentors, text_encoders, utils)
