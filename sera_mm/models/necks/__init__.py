from .coord_conv import CoordConv
from .sentence_gate import SentenceGate
from .text_gated_neck import TextGatedNeck

__all__ = ['CoordConv', 'SentenceGate', 'TextGatedNeck']
