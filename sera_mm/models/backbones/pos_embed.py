"""Resizing a ViT's absolute position embedding to another patch grid."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``'official'``: what the official DINOv2 models with registers do;
#: ``'detris'``: what DETRIS's copy of DINOv2 does.
POS_EMBED_MODES = ('official', 'detris')

#: DINOv2's old ``interpolate_offset``, kept by DETRIS.
DETRIS_INTERPOLATE_OFFSET = 0.1


def resize_pos_embed(pos_embed: Tensor, src_hw: Tuple[int, int], dst_hw: Tuple[int, int],
                     num_extra_tokens: int = 1, mode: str = 'official') -> Tensor:
    """Resizes a ViT position embedding to another patch grid, bicubic, in float32.

    - ``'official'``: ``antialias=True`` (another cubic kernel, also when
      upsampling, which mmpretrain's ``resize_pos_embed`` lacks), to the
      target grid *size*, as the official DINOv2 models with registers do
      (docs/en/environment.md).
    - ``'detris'``: ``antialias=False`` with ``scale_factor = (grid + 0.1) /
      stored grid`` per side, as DETRIS's DINOv2 (``interpolate_offset``):
      the kernel samples at ``(i + 0.5) * stored / (grid + 0.1) - 0.5``, not
      at the size-based positions.

    Args:
        pos_embed (Tensor): 1 x (num_extra_tokens + h*w) x C.
        src_hw (tuple[int, int]): The grid (h, w) ``pos_embed`` holds.
        dst_hw (tuple[int, int]): The grid wanted.
        num_extra_tokens (int): Leading tokens with a position embedding but
            no grid position (the cls token); copied unchanged. Defaults to 1.
        mode (str): One of :data:`POS_EMBED_MODES`. Defaults to 'official'.

    Returns:
        Tensor: 1 x (num_extra_tokens + H*W) x C, in ``pos_embed``'s dtype;
        ``pos_embed`` itself when the grids are equal (both modes).
    """
    if mode not in POS_EMBED_MODES:
        raise ValueError(f'resize_pos_embed: mode={mode!r}; choose from {POS_EMBED_MODES}')
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
    if mode == 'official':
        grid = F.interpolate(grid, size=dst_hw, mode='bicubic', antialias=True)
    else:
        scale = tuple((d + DETRIS_INTERPOLATE_OFFSET) / s for d, s in zip(dst_hw, src_hw))
        grid = F.interpolate(grid, scale_factor=scale, mode='bicubic', antialias=False)
        if tuple(grid.shape[-2:]) != dst_hw:
            raise ValueError(f"resize_pos_embed(mode='detris'): a {src_hw} grid scaled by "
                             f'{scale} gives {tuple(grid.shape[-2:])}, not {dst_hw}')
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, channels)
    return torch.cat([extra, grid.to(pos_embed.dtype)], dim=1)
