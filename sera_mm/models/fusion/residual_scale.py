"""A learnable per-channel scale of a residual branch (LayerScale)."""
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor


class ResidualScale(nn.Module):
    """Multiplies a B x C x H x W branch by a learnable per-channel weight.

    Used by the experts whose branch ends in phi (norm + ReLU) when
    SERA-Fusion starts them at zero: zeroing phi itself would stop learning
    (ReLU has no gradient at 0), a zero scale does not.

    Args:
        channels (int): C.
        init_value (float): Initial value of every weight.
    """

    def __init__(self, channels: int, init_value: float) -> None:
        super().__init__()
        self.init_value = float(init_value)
        self.weight = nn.Parameter(torch.full((channels,), self.init_value))

    def init_weights(self) -> None:
        """Sets every weight to ``init_value`` again (after an ancestor's
        ``init_cfg``); reached from the owning expert's ``init_weights``."""
        nn.init.constant_(self.weight, self.init_value)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1)


def zero_residual_scale(scale: Optional[ResidualScale], owner: str) -> None:
    """Zeroes ``scale`` for an expert's ``zero_init_residual``; raises
    ValueError, naming ``owner``, when it is None (no ``residual_scale``)."""
    if scale is None:
        raise ValueError(f'{owner}.zero_init_residual needs residual_scale (zeroing phi '
                         'would stop learning: ReLU has no gradient at 0)')
    nn.init.zeros_(scale.weight)
