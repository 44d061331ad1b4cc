from .dynamic_conv_head import DynamicConvHead
from .positional_encoding import (sine_position_encoding_1d,
                                  sine_position_encoding_2d)
from .vision_language_decoder import VisionLanguageDecoder
from .vision_language_decoder_layer import VisionLanguageDecoderLayer

__all__ = [
    'DynamicConvHead', 'VisionLanguageDecoder', 'VisionLanguageDecoderLayer',
    'sine_position_encoding_1d', 'sine_position_encoding_2d'
]
