"""SERA-Fusion's spatial expert: adds a learnt map of the pixel coordinates."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.registry import MODELS


@MODELS.register_module()
class SpatialExpert(BaseModule):
    """``E_sp = F + alpha_p * Conv1x1(coords)`` (docs/en/method.md, s. 3, spatial expert).

    ``coords`` is the 2 x H x W grid of normalised pixel positions: channel 0
    is x (along W), channel 1 is y (along H), both from -1 to 1 inclusive.
    The expert is the same for every sample: a position prior.

    Args:
        channels (int): Width C of the feature map.
        alpha (float): alpha_p, the scale of the coordinate term. Defaults
            to 0.1.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, channels: int, alpha: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.channels = channels
        self.alpha = alpha
        self.proj = nn.Conv2d(2, channels, kernel_size=1)

    @staticmethod
    def coordinate_grid(height: int, width: int, device: Optional[torch.device] = None,
                        dtype: Optional[torch.dtype] = None) -> Tensor:
        """Returns the normalised (x, y) grid, 2 x H x W, values in [-1, 1]."""
        ys = torch.linspace(-1., 1., height, device=device, dtype=dtype)
        xs = torch.linspace(-1., 1., width, device=device, dtype=dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
        return torch.stack([grid_x, grid_y])

    def zero_init_residual(self) -> None:
        """Zeroes the coordinate projection: the expert starts as the identity."""
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Maps B x C x H x W to B x C x H x W."""
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f'SpatialExpert: expected B x {self.channels} x H x W, '
                             f'got {tuple(x.shape)}')
        coords = self.coordinate_grid(x.size(2), x.size(3), x.device, x.dtype)
        return x + self.alpha * self.proj(coords.unsqueeze(0))
