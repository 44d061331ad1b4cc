from . import (adapters, backbones, data_preprocessors, decode_heads, fusion,  # noqa: F401
               losses, necks, routers, segmentors, text_encoders, utils)
