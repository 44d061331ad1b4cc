"""SERA-Fusion's boundary expert: features fused with their Sobel edge map."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.registry import MODELS
from .kernels import sobel_kernels
from .residual_scale import ResidualScale, zero_residual_scale


@MODELS.register_module()
class BoundaryExpert(BaseModule):
    """``E_bd = F + phi(Conv1x1([F, M]))`` (docs/en/method.md, s. 3, boundary expert).

    ``Gx, Gy`` are depthwise Sobel-x / Sobel-y responses (fixed kernels kept
    as non-trainable, non-persistent buffers, zero padding);
    ``M = sqrt(Gx^2 + Gy^2 + eps)``; phi is norm + activation.

    Args:
        channels (int): Width C of the feature map.
        eps (float): Keeps the square root differentiable at 0. Defaults to
            1e-6.
        norm_cfg (dict): Norm of phi. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation of phi. Defaults to ``dict(type='ReLU')``.
        residual_scale (float, optional): Initial value of a learnable
            per-channel scale of the branch (not in the paper; SERA-Fusion's
            ``zero_init_experts`` sets 0). Defaults to None: no scale.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 channels: int,
                 eps: float = 1e-6,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 residual_scale: Optional[float] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.channels = channels
        self.eps = eps
        # (2C) x 1 x 3 x 3 ordered [x, y] per channel, for groups=C.
        self.register_buffer('sobel', sobel_kernels().unsqueeze(1).repeat(channels, 1, 1, 1),
                             persistent=False)
        self.fuse = ConvModule(2 * channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.scale = None if residual_scale is None else ResidualScale(channels, residual_scale)

    def gradient_magnitude(self, x: Tensor) -> Tensor:
        """Returns M = sqrt(Gx^2 + Gy^2 + eps), B x C x H x W."""
        b, c, h, w = x.shape
        grads = F.conv2d(x, self.sobel.to(x.dtype), padding=1, groups=c)
        grads = grads.view(b, c, 2, h, w)
        return torch.sqrt(grads.pow(2).sum(dim=2) + self.eps)

    def zero_init_residual(self) -> None:
        """Zeroes the residual scale (the expert starts as the identity);
        raises ValueError without ``residual_scale``."""
        zero_residual_scale(self.scale, 'BoundaryExpert')

    def forward(self, x: Tensor) -> Tensor:
        """Maps B x C x H x W to B x C x H x W."""
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f'BoundaryExpert: expected B x {self.channels} x H x W, '
                             f'got {tuple(x.shape)}')
        branch = self.fuse(torch.cat([x, self.gradient_magnitude(x)], dim=1))
        return x + (branch if self.scale is None else self.scale(branch))
