"""SERA-Fusion's context expert: one pre-norm transformer layer over pixels."""
from typing import Optional

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.registry import MODELS


@MODELS.register_module()
class ContextExpert(BaseModule):
    """Pre-norm transformer layer on the H*W tokens (docs/en/method.md, s. 3, context expert).

    ``X1 = X + MHSA(LN(X))``; ``X2 = X1 + FFN(LN(X1))``; reshaped back to
    B x C x H x W. Every sample is treated on its own (no batch statistics).

    Args:
        channels (int): Width C of the feature map (the token width).
        num_heads (int): Attention heads; must divide C. Defaults to 8.
        ffn_ratio (float): FFN hidden width over C. Defaults to 4.0.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.
        ffn_drop (float): Dropout inside the FFN. Defaults to 0.
        act_cfg (dict): FFN activation. Defaults to ``dict(type='GELU')``.
        norm_cfg (dict): Token norm. Defaults to ``dict(type='LN')``.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 channels: int,
                 num_heads: int = 8,
                 ffn_ratio: float = 4.0,
                 attn_drop: float = 0.,
                 ffn_drop: float = 0.,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if channels % num_heads != 0:
            raise ValueError(f'ContextExpert: num_heads={num_heads} must divide '
                             f'channels={channels}')
        self.channels = channels
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        # torch's attention called with need_weights=False runs the fused
        # scaled_dot_product_attention kernel; mmcv's wrapper asks for the
        # weights and computes the softmax explicitly.
        self.attn = nn.MultiheadAttention(channels, num_heads, dropout=attn_drop,
                                          batch_first=True)
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        self.ffn = FFN(channels, int(channels * ffn_ratio), act_cfg=act_cfg, ffn_drop=ffn_drop)

    def zero_init_residual(self) -> None:
        """Zeroes the attention's output projection and the FFN's last
        linear layer: the expert starts as the identity."""
        last_linear = [m for m in self.ffn.modules() if isinstance(m, nn.Linear)][-1]
        for layer in (self.attn.out_proj, last_linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Maps B x C x H x W to B x C x H x W."""
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f'ContextExpert: expected B x {self.channels} x H x W, '
                             f'got {tuple(x.shape)}')
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B x HW x C
        normed = self.norm1(tokens)
        tokens = tokens + self.attn(normed, normed, normed, need_weights=False)[0]
        # mmcv's FFN adds its `identity` argument: the residual
        tokens = self.ffn(self.norm2(tokens), identity=tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)
