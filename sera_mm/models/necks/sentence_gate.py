"""Sentence gates of the DETRIS neck: level * MHA(q=level, k=v=s)."""
from typing import Tuple

import torch.nn as nn
from torch import Tensor


def fold_attention_gate(txt_proj_w: Tensor, txt_proj_b: Tensor, in_proj_w: Tensor,
                        in_proj_b: Tensor, out_proj_w: Tensor,
                        out_proj_b: Tensor) -> Tuple[Tensor, Tensor]:
    """Folds DETRIS's gate ``MHA(q, k=v=txt_proj(s))`` into one linear map of s.

    Softmax over one key is 1, so the gate is ``W_o (W_v (W_t s + b_t) + b_v)
    + b_o``, with W_v, b_v the value rows of the attention's input
    projection. Used by the DETRIS checkpoint converter for ``gate='folded'``.

    Returns:
        tuple[Tensor, Tensor]: :class:`SentenceGate`'s ``value`` weight
        ``W_o W_v W_t`` and bias ``W_o (W_v b_t + b_v) + b_o``, computed in
        float64 and returned in the input's dtype.
    """
    c = out_proj_w.shape[0]
    w_v, b_v = in_proj_w[2 * c:].double(), in_proj_b[2 * c:].double()
    w_o, b_o = out_proj_w.double(), out_proj_b.double()
    weight = w_o @ w_v @ txt_proj_w.double()
    bias = w_o @ (w_v @ txt_proj_b.double() + b_v) + b_o
    return weight.to(out_proj_w.dtype), bias.to(out_proj_b.dtype)


class AttentionSentenceGate(nn.Module):
    """DETRIS's gate: ``x * MHA(q=x, k=v=t)`` with the sentence as the only key.

    ``t`` is the sentence feature after the neck's shared ``txt_proj``. The
    attention is parameterised as DETRIS's (``attn`` is its
    ``fusion{3,4,5}.multihead_attn``), so its checkpoints load one to one
    and it trains with DETRIS's parameter set. With a single key the output
    is ``out_proj(v_proj(t))`` at every pixel: the query and key projections
    get gradients of rounding size only (Adam still moves them, as in
    DETRIS's training). :class:`SentenceGate` is the folded form.

    Args:
        channels (int): Channels C of the gated map (and of ``t``).
        num_heads (int): Heads of the attention. Defaults to 8.
    """

    def __init__(self, channels: int, num_heads: int = 8) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(channels, num_heads, batch_first=True)

    def forward(self, x: Tensor, text: Tensor) -> Tensor:
        """Gates ``x`` (B x C x H x W) with ``text`` (B x C, projected sentence).

        Returns:
            Tensor: B x C x H x W.
        """
        b, c, h, w = x.shape
        pixels = x.flatten(2).transpose(1, 2)
        key = text[:, None, :]
        gate, _ = self.attn(pixels, key, key, need_weights=False)
        return x * gate.transpose(1, 2).reshape(b, c, h, w)


class SentenceGate(nn.Module):
    """The folded gate: ``x * Linear(s)``.

    DETRIS's gate is an affine map of ``s`` (see :func:`fold_attention_gate`,
    which folds a DETRIS checkpoint into this one exactly); this computes it
    with one linear layer per level, without the query and key projections
    and the shared ``txt_proj``. It trains with another parameterisation, so
    it is an option, not DETRIS.

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
