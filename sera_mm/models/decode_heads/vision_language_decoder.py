"""DETRIS's vision-language decoder (docs/en/method.md, s. 5)."""
from typing import Optional

import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.models.utils import TextFeatures
from sera_mm.registry import MODELS
from .positional_encoding import (sine_position_encoding_1d,
                                  sine_position_encoding_2d)
from .vision_language_decoder_layer import VisionLanguageDecoderLayer


@MODELS.register_module()
class VisionLanguageDecoder(BaseModule):
    """Stacked pixel self-attention + pixel-to-word cross-attention layers.

    Pixels get 2-D sine position encodings and words 1-D ones; padding
    words are masked out of the cross-attention with ``text.pad_mask``.
    Words are projected to the decoder width when their width differs.
    A final LayerNorm closes the stack.

    Args:
        num_layers (int): Decoder layers. Defaults to 3.
        channels (int): Width C of the pixel map. Defaults to 512.
        text_channels (int): Width of the word features. Defaults to 512.
        num_heads (int): Attention heads. Defaults to 8.
        feedforward_channels (int): FFN hidden width. Defaults to 512 (DETRIS).
        dropout (float): Dropout. Defaults to 0.1.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 num_layers: int = 3,
                 channels: int = 512,
                 text_channels: int = 512,
                 num_heads: int = 8,
                 feedforward_channels: int = 512,
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if channels % num_heads:
            raise ValueError(f'VisionLanguageDecoder: channels={channels} is not '
                             f'divisible by num_heads={num_heads}')
        self.channels = channels
        self.word_proj = (nn.Identity() if text_channels == channels else
                          nn.Linear(text_channels, channels))
        self.layers = nn.ModuleList(
            VisionLanguageDecoderLayer(channels, num_heads, feedforward_channels, dropout)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor, text: TextFeatures) -> Tensor:
        """Called by the segmentor after the neck.

        Args:
            x (Tensor): B x C x H x W neck output.
            text (TextFeatures): ``words`` (B x L x C_t) and ``pad_mask``
                (B x L, True = padding) are read.

        Returns:
            Tensor: B x C x H x W.
        """
        b, c, h, w = x.shape
        words = self.word_proj(text.words)
        pixel_pos = sine_position_encoding_2d(h, w, c, x.device).to(x.dtype)
        word_pos = sine_position_encoding_1d(words.shape[1], c, x.device).to(words.dtype)

        pixels = x.flatten(2).transpose(1, 2)
        for layer in self.layers:
            pixels = layer(pixels, words, pixel_pos, word_pos, text.pad_mask)
        return self.norm(pixels).transpose(1, 2).reshape(b, c, h, w)
