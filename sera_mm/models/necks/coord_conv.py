"""CoordConv: a convolution that also sees the pixel coordinates."""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch import Tensor


def coordinate_grid(batch: int, height: int, width: int,
                    like: Tensor) -> Tensor:
    """Normalised (x, y) coordinates in [-1, 1], B x 2 x H x W.

    Channel 0 is x (varies along the width), channel 1 is y.
    """
    ys = torch.linspace(-1, 1, height, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1, 1, width, device=like.device, dtype=like.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([grid_x, grid_y]).expand(batch, -1, -1, -1)


class CoordConv(nn.Module):
    """Conv + norm + activation over the input with two coordinate channels.

    Args:
        in_channels (int): Channels of the input map.
        out_channels (int): Channels of the output map.
        kernel_size (int): Kernel size; padded to keep H x W. Defaults to 3.
        norm_cfg (dict, optional): Norm layer. Defaults to BN.
        act_cfg (dict, optional): Activation. Defaults to ReLU.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')) -> None:
        super().__init__()
        self.conv = ConvModule(
            in_channels + 2,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """B x C_in x H x W -> B x C_out x H x W."""
        b, _, h, w = x.shape
        return self.conv(torch.cat([x, coordinate_grid(b, h, w, x)], dim=1))
