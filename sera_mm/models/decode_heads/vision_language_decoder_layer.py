"""One layer of the vision-language decoder."""
from typing import Optional

import torch.nn as nn
from torch import Tensor


class VisionLanguageDecoderLayer(nn.Module):
    """Pixel self-attention, pixel-to-word cross-attention, FFN (pre-norm).

    Laid out as DETRIS's decoder layer: each sub-block normalises its input,
    normalises its output again, and is added back after dropout; the FFN
    has a LayerNorm between its two linears. Position encodings are added
    to queries and keys, not to values. Attention uses
    :class:`torch.nn.MultiheadAttention` without returned weights, which
    runs on ``scaled_dot_product_attention``.

    Args:
        channels (int): Width C of pixels and (projected) words.
        num_heads (int): Attention heads. Defaults to 8.
        feedforward_channels (int): FFN hidden width. Defaults to 512 (DETRIS).
        dropout (float): Dropout of attention weights, attention outputs and
            the FFN. Defaults to 0.1.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 feedforward_channels: int = 512,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            channels, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(
            channels, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(channels, feedforward_channels), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.LayerNorm(feedforward_channels),
            nn.Linear(feedforward_channels, channels))
        self.norm_self_in = nn.LayerNorm(channels)
        self.norm_self_out = nn.LayerNorm(channels)
        self.norm_cross_in = nn.LayerNorm(channels)
        self.norm_cross_out = nn.LayerNorm(channels)
        self.norm_ffn_in = nn.LayerNorm(channels)
        self.drop_self = nn.Dropout(dropout)
        self.drop_cross = nn.Dropout(dropout)
        self.drop_ffn = nn.Dropout(dropout)

    def forward(self, pixels: Tensor, words: Tensor, pixel_pos: Tensor,
                word_pos: Tensor, pad_mask: Optional[Tensor]) -> Tensor:
        """Updates the pixel tokens.

        Args:
            pixels (Tensor): B x N x C pixel tokens.
            words (Tensor): B x L x C word tokens.
            pixel_pos (Tensor): N x C (or B x N x C) pixel encodings.
            word_pos (Tensor): L x C (or B x L x C) word encodings.
            pad_mask (Tensor, optional): B x L bool, True at padding words.

        Returns:
            Tensor: B x N x C.
        """
        h = self.norm_self_in(pixels)
        q = h + pixel_pos
        h = self.self_attn(q, q, h, need_weights=False)[0]
        pixels = pixels + self.drop_self(self.norm_self_out(h))

        h = self.norm_cross_in(pixels)
        h = self.cross_attn(h + pixel_pos, words + word_pos, words,
                            key_padding_mask=pad_mask, need_weights=False)[0]
        pixels = pixels + self.drop_cross(self.norm_cross_out(h))

        return pixels + self.drop_ffn(self.ffn(self.norm_ffn_in(pixels)))
