from .dynamic_conv_head import DynamicConvHead
from .positional_encoding import (sine_position_encoding_1d,
                                  sine_position_encoding_2d)
from .presence_head import PresenceHead
from .vision_language_decoder import VisionLanguageDecoder
from .vision_language_decoder_layer import VisionLanguageDecoderLayer

__all__ = [
    'DynamicConvHead', 'PresenceHead', 'VisionLanguageDecoder', 'VisionLanguageDecoderLayer',
    'sine_position_encoding_1d', 'sine_position_encoding_2d'
]
