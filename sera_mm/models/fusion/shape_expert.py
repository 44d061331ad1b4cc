"""SERA-Fusion's shape expert: features fused with a blur and a Laplacian."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.registry import MODELS
from .kernels import depthwise_weight, gaussian_kernel, laplacian_kernel
from .residual_scale import ResidualScale, zero_residual_scale


@MODELS.register_module()
class ShapeExpert(BaseModule):
    """``E_sh = F + phi(Conv1x1([F, Bl, La]))`` (docs/en/method.md, s. 3, shape expert).

    ``Bl`` is a depthwise 3 x 3 Gaussian blur (the binomial kernel, fixed: a
    non-persistent buffer); ``La`` a depthwise 3 x 3 conv initialised to the
    discrete Laplace kernel (when built and again by :meth:`init_weights`)
    and learnable (the paper says "initialised"). Both zero-pad. phi is norm
    + activation.

    Args:
        channels (int): Width C of the feature map.
        norm_cfg (dict): Norm of phi. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation of phi. Defaults to ``dict(type='ReLU')``.
        residual_scale (float, optional): Initial value of a learnable
            per-channel scale of the branch (not in the paper; SERA-Fusion's
            ``zero_init_experts`` sets 0). Defaults to None: no scale.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 channels: int,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 residual_scale: Optional[float] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.channels = channels
        self.register_buffer('blur', depthwise_weight(gaussian_kernel(), channels),
                             persistent=False)
        self.laplacian = nn.Conv2d(channels, channels, 3, padding=1, groups=channels,
                                   bias=False)
        self.fuse = ConvModule(3 * channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.scale = None if residual_scale is None else ResidualScale(channels, residual_scale)
        self._init_laplacian()

    def _init_laplacian(self) -> None:
        with torch.no_grad():
            self.laplacian.weight.copy_(depthwise_weight(laplacian_kernel(), self.channels))

    def init_weights(self) -> None:
        """Runs mmengine's initialisation, then sets the Laplace kernel again,
        last so that no ``init_cfg`` overwrites it; reached from SERA-Fusion's."""
        super().init_weights()
        self._init_laplacian()

    def zero_init_residual(self) -> None:
        """Zeroes the residual scale (the expert starts as the identity);
        raises ValueError without ``residual_scale``."""
        zero_residual_scale(self.scale, 'ShapeExpert')

    def forward(self, x: Tensor) -> Tensor:
        """Maps B x C x H x W to B x C x H x W."""
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f'ShapeExpert: expected B x {self.channels} x H x W, '
                             f'got {tuple(x.shape)}')
        blurred = F.conv2d(x, self.blur.to(x.dtype), padding=1, groups=self.channels)
        branch = self.fuse(torch.cat([x, blurred, self.laplacian(x)], dim=1))
        return x + (branch if self.scale is None else self.scale(branch))
