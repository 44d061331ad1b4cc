"""Tiles pictures of any sizes into one contact sheet.

Written here: mmengine's Visualizer draws on one image, and its only tiling
(``draw_featmap``'s channel grid) takes feature maps of one size.
"""
import math
from typing import Optional, Sequence

import mmcv
import numpy as np


def make_contact_sheet(images: Sequence[np.ndarray],
                       cell: int = 256,
                       columns: Optional[int] = None,
                       gap: int = 4,
                       background: int = 255) -> np.ndarray:
    """Places each image, scaled to fit a ``cell`` x ``cell`` square (aspect
    ratio kept, centred), on a grid.

    Args:
        images (Sequence[np.ndarray]): H x W x 3 uint8 pictures, any sizes.
        cell (int): Side of a cell in pixels. Defaults to 256.
        columns (int, optional): Cells per row. Defaults to
            ``ceil(sqrt(n))``.
        gap (int): Pixels between and around cells. Defaults to 4.
        background (int): Grey level of the gaps. Defaults to 255.

    Returns:
        np.ndarray: rows * (cell + gap) + gap by columns * (cell + gap) + gap
        by 3, uint8.
    """
    if not images:
        raise ValueError('make_contact_sheet: no images')
    n = len(images)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    sheet = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap, 3),
                    background, dtype=np.uint8)
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'make_contact_sheet: image {i} must be H x W x 3, '
                             f'got {img.shape}')
        h, w = img.shape[:2]
        scale = min(cell / h, cell / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        # area averaging when shrinking (no aliasing of thin outlines)
        tile = mmcv.imresize(img, (nw, nh),
                             interpolation='area' if scale < 1 else 'bilinear')
        r, c = divmod(i, columns)
        y = gap + r * (cell + gap) + (cell - nh) // 2
        x = gap + c * (cell + gap) + (cell - nw) // 2
        sheet[y:y + nh, x:x + nw] = tile
    return sheet
