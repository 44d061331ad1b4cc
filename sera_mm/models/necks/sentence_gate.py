"""Sentence gate of the DETRIS neck: level * MHA(level, s)."""
import torch.nn as nn
from torch import Tensor


class SentenceGate(nn.Module):
    """Multiplies a feature map by an attention read-out of the sentence.

    DETRIS gates each level with ``level * MHA(q=level, k=v=s)`` where the
    sentence feature ``s`` is the only key. Softmax over a single key is 1,
    so the attention output is ``out_proj(v_proj(s))`` at every pixel,
    whatever the query: an affine map of ``s``. This module computes that map
    directly with one linear layer. It is exact (see the test against
    :class:`torch.nn.MultiheadAttention`) and leaves out the query and key
    projections, which could never receive a gradient.

    Args:
        channels (int): Channels C of the gated map.
        text_channels (int): Width of the sentence feature.
    """

    def __init__(self, channels: int, text_channels: int) -> None:
        super().__init__()
        self.value = nn.Linear(text_channels, channels)

    def forward(self, x: Tensor, sentence: Tensor) -> Tensor:
        """Gates ``x`` (B x C x H x W) with ``sentence`` (B x C_s).

        Returns:
            Tensor: B x C x H x W.
        """
        return x * self.value(sentence)[:, :, None, None]
