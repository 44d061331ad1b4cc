from .coord_conv import CoordConv
from .sentence_gate import AttentionSentenceGate, SentenceGate, fold_attention_gate
from .text_gated_neck import TextGatedNeck

__all__ = [
    'AttentionSentenceGate', 'CoordConv', 'SentenceGate', 'TextGatedNeck', 'fold_attention_gate'
]
