from .dense_aligner import CrossModalAttention, DenseAligner
from .sera_adapter import SERAAdapter
from .text_adapter import TextAdapter

__all__ = ['CrossModalAttention', 'DenseAligner', 'SERAAdapter', 'TextAdapter']
