"""Fixed sine position encodings for words (1-D) and pixels (2-D)."""
import math

import torch
from torch import Tensor


def _sine_table(positions: Tensor, dim: int) -> Tensor:
    """Transformer sine table: len(positions) x dim, dim even.

    Column 2i holds sin(p / 10000^(2i/dim)), column 2i+1 the cosine.
    """
    freqs = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) *
        (-math.log(10000.0) / dim))
    angles = positions.float()[:, None] * freqs[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


def sine_position_encoding_1d(length: int, dim: int,
                              device: torch.device = None) -> Tensor:
    """Position encodings of a sequence, length x dim (dim even)."""
    if dim % 2:
        raise ValueError(f'sine_position_encoding_1d: dim must be even, got {dim}')
    return _sine_table(torch.arange(length, device=device), dim)


def sine_position_encoding_2d(height: int, width: int, dim: int,
                              device: torch.device = None) -> Tensor:
    """Position encodings of a grid in row-major order, (H*W) x dim.

    The first dim/2 channels encode the column (x), the last dim/2 the row
    (y), each as a 1-D sine table; dim must be a multiple of 4.
    """
    if dim % 4:
        raise ValueError(f'sine_position_encoding_2d: dim must be a multiple of 4, got {dim}')
    half = dim // 2
    pos_x = _sine_table(torch.arange(width, device=device), half)
    pos_y = _sine_table(torch.arange(height, device=device), half)
    grid = torch.cat([
        pos_x[None, :, :].expand(height, -1, -1),
        pos_y[:, None, :].expand(-1, width, -1)
    ], dim=-1)
    return grid.reshape(height * width, dim)
