"""Absolute position embeddings resized the way the DINOv2-reg models do it."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_pos_embed_antialias(pos_embed: Tensor, src_hw: Tuple[int, int],
                               dst_hw: Tuple[int, int],
                               num_extra_tokens: int = 1) -> Tensor:
    """Resizes a ViT position embedding to another patch grid.

    Bicubic, ``antialias=True``, to the target grid *size* (not a scale
    factor), in float32, as the official DINOv2 models with registers do.
    mmpretrain's ``resize_pos_embed`` does not antialias, and
    ``F.interpolate`` uses another cubic kernel with antialias on (also when
    upsampling), so that function would give other numbers
    (ENVIRONMENT.md, trap 11).

    Args:
        pos_embed (Tensor): 1 x (num_extra_tokens + h*w) x C.
        src_hw (tuple[int, int]): The grid (h, w) ``pos_embed`` holds.
        dst_hw (tuple[int, int]): The grid wanted.
        num_extra_tokens (int): Leading tokens with a position embedding but
            no grid position (the cls token); copied unchanged. Defaults to 1.

    Returns:
        Tensor: 1 x (num_extra_tokens + H*W) x C, in ``pos_embed``'s dtype;
        ``pos_embed`` itself when the grids are equal.
    """
    src_hw, dst_hw = tuple(src_hw), tuple(dst_hw)
    channels = pos_embed.shape[-1]
    expected = num_extra_tokens + src_hw[0] * src_hw[1]
    if pos_embed.dim() != 3 or pos_embed.shape[1] != expected:
        raise ValueError(
            f'pos_embed of shape {tuple(pos_embed.shape)} does not hold '
            f'{num_extra_tokens} extra tokens + a {src_hw} grid')
    if src_hw == dst_hw:
        return pos_embed
    extra = pos_embed[:, :num_extra_tokens]
    grid = pos_embed[:, num_extra_tokens:].float()
    grid = grid.reshape(1, *src_hw, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=dst_hw, mode='bicubic', antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, channels)
    return torch.cat([extra, grid.to(pos_embed.dtype)], dim=1)
