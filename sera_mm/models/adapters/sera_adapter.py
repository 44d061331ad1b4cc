"""SERA-Adapter: an expression-conditioned adapter beside a ViT block's FFN."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from sera_mm.registry import MODELS
from ..fusion.kernels import depthwise_weight, laplacian_kernel
from ..routers import SoftRouter
from ..utils import RoutingResult, TextFeatures


@MODELS.register_module()
class SERAAdapter(BaseModule):
    """The adapter A(H, T) of SERA.md section 2, steps 1-7.

    1. ``Z = H W_down`` (D -> d); split prefix tokens Z_p and spatial tokens
       Z_s; F = Z_s as B x d x H x W.
    2. ``F_ms = F + Fuse(phi(Conv1x1 F), phi(Conv3x3 F), phi(Conv5x5 F))``.
    3. ``E_b = F_ms + alpha_b phi(DW_b F_ms)`` (DW_b Laplacian-initialised),
       ``E_s = F_ms + alpha_s phi(DW_s F_ms)``.
    4. ``w = softmax(W_r g)``, g the mean of Z_s over tokens (concatenated
       with the projected sentence feature when ``router_text``). Expert
       order in w: 0 = spatial, 1 = boundary.
    5. ``F_c = F_ms + lambda_s w_s E_s + lambda_b w_b E_b``.
    6. ``S' = S + MHA(S, T W_t, T W_t)`` with the words' padding mask.
    7. ``A = (Z + concat(Z_p, S')) W_up``; W_up starts at zero, so the
       adapter outputs exactly 0 at initialisation.

    The owning block scales the result by gamma_a and adds it to its FFN
    branch. After each forward, ``last_routing`` holds the soft router's
    result, detached, for statistics hooks.

    Args:
        in_channels (int): Backbone width D.
        channels (int): Adapter width d. Defaults to 128.
        text_channels (int): Word feature width (projected to d by W_t).
            Defaults to 512.
        num_heads (int): Cross-attention heads; must divide d. Defaults to 4.
        alpha_b (float): Boundary expert scale. Defaults to 0.1.
        alpha_s (float): Spatial expert scale. Defaults to 0.1.
        lambda_s (float): Weight of the spatial expert in F_c. Defaults to 1.
        lambda_b (float): Weight of the boundary expert in F_c. Defaults to 1.
        router_text (bool): Route on [g, W_s s] instead of g. Defaults to
            False (the paper's visual-only router).
        sentence_channels (int): Sentence feature width, used only when
            ``router_text``. Defaults to 512.
        ms_kernel_sizes (Sequence[int]): Kernel sizes of the multi-scale
            branches. Defaults to (1, 3, 5).
        attn_drop (float): Dropout on the cross-attention weights.
            Defaults to 0.
        norm_cfg (dict): Norm of phi. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation of phi. Defaults to ``dict(type='ReLU')``.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 128,
                 text_channels: int = 512,
                 num_heads: int = 4,
                 alpha_b: float = 0.1,
                 alpha_s: float = 0.1,
                 lambda_s: float = 1.0,
                 lambda_b: float = 1.0,
                 router_text: bool = False,
                 sentence_channels: int = 512,
                 ms_kernel_sizes: Sequence[int] = (1, 3, 5),
                 attn_drop: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if channels % num_heads != 0:
            raise ValueError(f'SERAAdapter: num_heads={num_heads} must divide '
                             f'channels={channels}')
        if any(k % 2 == 0 for k in ms_kernel_sizes):
            raise ValueError(f'SERAAdapter: ms_kernel_sizes must be odd, got {ms_kernel_sizes}')
        self.in_channels = in_channels
        self.channels = channels
        self.text_channels = text_channels
        self.alpha_b = alpha_b
        self.alpha_s = alpha_s
        self.lambda_s = lambda_s
        self.lambda_b = lambda_b
        self.router_text = router_text

        self.down = nn.Linear(in_channels, channels)
        self.ms_branches = ModuleList([
            ConvModule(channels, channels, k, padding=k // 2, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for k in ms_kernel_sizes
        ])
        self.ms_fuse = nn.Conv2d(len(ms_kernel_sizes) * channels, channels, 1)
        self.boundary_dw = ConvModule(channels, channels, 3, padding=1, groups=channels,
                                      norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.spatial_dw = ConvModule(channels, channels, 3, padding=1, groups=channels,
                                     norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.sentence_proj = nn.Linear(sentence_channels, channels) if router_text else None
        self.router = SoftRouter(2 * channels if router_text else channels, num_experts=2)
        self.text_proj = nn.Linear(text_channels, channels)
        self.cross_attn = MultiheadAttention(channels, num_heads, attn_drop=attn_drop,
                                             batch_first=True)
        self.up = nn.Linear(channels, in_channels)
        self.last_routing: Optional[RoutingResult] = None
        self._init_special()

    def _init_special(self) -> None:
        with torch.no_grad():
            self.boundary_dw.conv.weight.copy_(
                depthwise_weight(laplacian_kernel(), self.channels))
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def init_weights(self) -> None:
        """Runs mmengine's initialisation, then restores the Laplacian DW_b and
        the zero W_up (an ancestor's ``init_cfg`` may have overwritten them).

        Called by the runner through the parents' ``init_weights``.
        """
        super().init_weights()
        self._init_special()

    def forward(self, h: Tensor, text: TextFeatures, hw: Tuple[int, int],
                num_prefix_tokens: int) -> Tensor:
        """Computes A(H, T); called by the block on LN2's output.

        Args:
            h (Tensor): B x N x D tokens, N = num_prefix_tokens + H*W.
            text (TextFeatures): words B x L x text_channels, pad_mask B x L
                (True = padding; a row must keep at least one word, else
                the attention gives NaN), sentence B x sentence_channels.
            hw (tuple): The patch grid (H, W).
            num_prefix_tokens (int): cls + register tokens before the patches.

        Returns:
            Tensor: B x N x D, the adapter output (before gamma_a).
        """
        b, n, d_in = h.shape
        height, width = hw
        if d_in != self.in_channels or n != num_prefix_tokens + height * width:
            raise ValueError(
                f'SERAAdapter: expected h of B x ({num_prefix_tokens} + {height}*{width}) x '
                f'{self.in_channels}, got {tuple(h.shape)}')
        self._check_text(text, b)

        z = self.down(h)
        z_prefix, z_spatial = z[:, :num_prefix_tokens], z[:, num_prefix_tokens:]
        f = z_spatial.transpose(1, 2).reshape(b, self.channels, height, width)

        f_ms = f + self.ms_fuse(torch.cat([branch(f) for branch in self.ms_branches], dim=1))
        e_s = f_ms + self.alpha_s * self.spatial_dw(f_ms)
        e_b = f_ms + self.alpha_b * self.boundary_dw(f_ms)

        g = z_spatial.mean(dim=1)
        if self.router_text:
            g = torch.cat([g, self.sentence_proj(text.sentence)], dim=1)
        routing = self.router(g)
        w_s = routing.weights[:, 0].view(b, 1, 1, 1)
        w_b = routing.weights[:, 1].view(b, 1, 1, 1)
        f_c = f_ms + self.lambda_s * w_s * e_s + self.lambda_b * w_b * e_b

        s = f_c.flatten(2).transpose(1, 2)  # B x HW x d
        words = self.text_proj(text.words)
        # mmcv's attention adds its query back (identity): this is S + MHA(...).
        s = self.cross_attn(s, key=words, value=words, key_padding_mask=text.pad_mask)

        # SERA.md step 7 read literally: the prefix tokens enter twice (Z_p in Z
        # and in the concat), the spatial ones as Z_s + S'.
        z = z + torch.cat([z_prefix, s], dim=1)
        self.last_routing = RoutingResult(routing.logits.detach(), routing.weights.detach(), None)
        return self.up(z)

    def _check_text(self, text: TextFeatures, batch: int) -> None:
        words, pad_mask = text.words, text.pad_mask
        if words.dim() != 3 or words.size(0) != batch or words.size(2) != self.text_channels:
            raise ValueError(f'SERAAdapter: text.words must be {batch} x L x '
                             f'{self.text_channels}, got {tuple(words.shape)}')
        if pad_mask.shape != words.shape[:2] or pad_mask.dtype != torch.bool:
            raise ValueError(f'SERAAdapter: text.pad_mask must be a bool {tuple(words.shape[:2])} '
                             f'tensor, got {pad_mask.dtype} {tuple(pad_mask.shape)}')
        if self.router_text and (text.sentence is None or text.sentence.size(0) != batch):
            raise ValueError('SERAAdapter: router_text=True needs text.sentence of B x '
                             'sentence_channels')
