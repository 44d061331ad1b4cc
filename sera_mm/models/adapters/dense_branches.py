"""DETRIS's densely connected multi-scale convolutions (1x1, 3x3, 5x5)."""
import warnings
from typing import List

import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int,
                 dims: int) -> ConvModule:
    """Conv (with bias) + BatchNorm (eps 1e-3) + ReLU, as DETRIS's BasicConv.

    DETRIS keeps the conv bias in front of the BatchNorm; its checkpoints hold
    it, so it is kept here although the norm makes it redundant.
    """
    with warnings.catch_warnings():
        # mmcv's "Unnecessary conv bias before batch/instance norm": deliberate
        warnings.filterwarnings('ignore', message='Unnecessary conv bias')
        return ConvModule(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True,
            conv_cfg=dict(type='Conv1d') if dims == 1 else None,
            norm_cfg=dict(type='BN1d' if dims == 1 else 'BN', eps=1e-3),
            act_cfg=dict(type='ReLU'))


class DenseBranchesMixin:
    """Builds and runs DETRIS's dense multi-scale block on an ``nn.Module``.

    The three branches are attributes of the adapter itself
    (``dense_branch1``, ``dense_branch2.{0,1}``, ``dense_branch3.{0,1}``), so
    the adapter's parameter names are DETRIS's and its checkpoints map one to
    one. With input X of width d::

        b1 = phi(1x1, d -> d/2)(X)
        b2 = phi(3x3, d/16 -> d/4)(phi(1x1, d + d/2 -> d/16)([X, b1]))
        b3 = phi(5x5, d/16 -> d/4)(phi(1x1, d + d/2 + d/4 -> d/16)([X, b1, b2]))
        out = [b1, b2, b3]                      (d channels)

    phi is conv (with bias) + BatchNorm (eps 1e-3) + ReLU; ``dims`` 1 for
    token sequences (the text adapter), 2 for patch grids (DenseAligner).
    """

    def _build_dense_branches(self, channels: int, dims: int) -> None:
        """Adds the three branches for width ``channels``; called in ``__init__``."""
        if channels % 16:
            raise ValueError(f'the dense branches need an adapter width divisible by 16, '
                             f'got {channels}')
        half, reduced, quarter = channels // 2, channels // 16, channels // 4
        self.dense_branch1 = conv_bn_relu(channels, half, 1, dims)
        self.dense_branch2 = nn.Sequential(
            conv_bn_relu(channels + half, reduced, 1, dims),
            conv_bn_relu(reduced, quarter, 3, dims))
        self.dense_branch3 = nn.Sequential(
            conv_bn_relu(channels + half + quarter, reduced, 1, dims),
            conv_bn_relu(reduced, quarter, 5, dims))

    def _dense_branches(self, x: Tensor) -> Tensor:
        """B x d x ... -> B x d x ... (the concatenated branch outputs)."""
        b1 = self.dense_branch1(x)
        b2 = self.dense_branch2(torch.cat([x, b1], dim=1))
        b3 = self.dense_branch3(torch.cat([x, b1, b2], dim=1))
        return torch.cat([b1, b2, b3], dim=1)

    def _dense_convs(self) -> List[ConvModule]:
        """The branches' ConvModules, in order."""
        return [self.dense_branch1, *self.dense_branch2, *self.dense_branch3]
