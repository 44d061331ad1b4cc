"""Letterbox resize (keep aspect ratio, centre pad) and its inverse."""
from typing import Dict, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform

from sera_mm.registry import TRANSFORMS

ArrayLike = Union[np.ndarray, torch.Tensor]

#: CLIP's mean colour (RGB 122.8, 116.7, 104.1) in BGR order, the channel
#: order of mmcv's LoadImageFromFile.
CLIP_MEAN_BGR = (104, 117, 123)


def nearest_exact_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` output pixels, pixel-centre nearest.

    ``floor((i + 0.5) * src / dst)``, torch's 'nearest-exact'. mmcv's
    'nearest' is OpenCV's INTER_NEAREST, ``floor(i * src / dst)``, which
    shifts a mask by up to a pixel against the bilinear image and does not
    undo an upscaling exactly; the pixel-centre rule does both right.
    """
    idx = np.floor((np.arange(dst) + 0.5) * (src / dst)).astype(np.int64)
    return np.minimum(idx, src - 1)


def _resize_nearest(x: ArrayLike, size: Tuple[int, int]) -> ArrayLike:
    """Resizes the last two axes of ``x`` to ``size`` (h, w), any dtype."""
    h, w = x.shape[-2:]
    rows = nearest_exact_indices(h, size[0])
    cols = nearest_exact_indices(w, size[1])
    if isinstance(x, torch.Tensor):
        rows_t = torch.as_tensor(rows, device=x.device)
        cols_t = torch.as_tensor(cols, device=x.device)
        return x.index_select(-2, rows_t).index_select(-1, cols_t)
    return x[..., rows[:, None], cols[None, :]]


def _resize_bilinear(x: ArrayLike, size: Tuple[int, int]) -> ArrayLike:
    """Bilinear (half-pixel centres) resize of the last two axes."""
    if isinstance(x, torch.Tensor):
        lead = x.shape[:-2]
        y = F.interpolate(x.reshape(1, -1, *x.shape[-2:]), size=size,
                          mode='bilinear', align_corners=False)
        return y.reshape(*lead, *size)
    lead = x.shape[:-2]
    # OpenCV has no float16 resize: work in float32, return x's dtype.
    flat = x.reshape(-1, *x.shape[-2:]).astype(np.float32)
    out = np.stack([mmcv.imresize(m, (size[1], size[0]),
                                  interpolation='bilinear') for m in flat])
    return out.reshape(*lead, *size).astype(x.dtype)


def undo_letterbox(x: ArrayLike, letterbox: Dict) -> ArrayLike:
    """Maps a map on the letterboxed input back to the original image.

    Crops the padding, then resizes to ``letterbox['ori_shape']``: bilinear
    for floating point input (logits, probabilities), pixel-centre nearest
    for integer and bool input (masks).

    Args:
        x: H x W or ... x H x W array or tensor at the letterboxed size
            (``resized_shape`` plus ``pad``).
        letterbox: the ``results['letterbox']`` dict set by :class:`Letterbox`
            (also in the data sample's metainfo).

    Returns:
        same type, dtype and leading axes as ``x``, spatial size ``ori_shape``.
    """
    left, top, right, bottom = letterbox['pad']
    nh, nw = letterbox['resized_shape']
    ori = tuple(int(v) for v in letterbox['ori_shape'][:2])
    expected = (nh + top + bottom, nw + left + right)
    if tuple(x.shape[-2:]) != expected:
        raise ValueError(f'undo_letterbox expects spatial size {expected} '
                         f'(the letterboxed input), got {tuple(x.shape[-2:])}')
    crop = x[..., top:top + nh, left:left + nw]
    floating = crop.is_floating_point() if isinstance(crop, torch.Tensor) \
        else np.issubdtype(crop.dtype, np.floating)
    if floating:
        return _resize_bilinear(crop, ori)
    return _resize_nearest(crop, ori)


@TRANSFORMS.register_module()
class Letterbox(BaseTransform):
    """Resizes keeping the aspect ratio, then pads to a fixed size, centred.

    The image is scaled by ``min(S_h / h, S_w / w)`` (bilinear), masks in
    ``seg_fields`` with pixel-centre nearest; the padding is split evenly
    (the odd pixel goes right / bottom).

    Required keys: ``img``. Modified: ``img``, every key of ``seg_fields``.
    Added: ``img_shape``, ``pad_shape``, ``scale_factor`` (w, h), ``keep_ratio``
    and ``letterbox = dict(scale, pad=(left, top, right, bottom),
    resized_shape=(h', w'), ori_shape=(h, w))``, all that
    :func:`undo_letterbox` needs.

    Args:
        scale: output size, an int S (S x S) or (w, h). Defaults to 448.
        pad_val: image padding value, a number or one per channel, in the
            image's channel order. Defaults to CLIP's mean colour in BGR.
        seg_pad_val: padding value of masks. Defaults to 0 (background).
    """

    def __init__(self,
                 scale: Union[int, Sequence[int]] = 448,
                 pad_val: Union[float, Sequence[float]] = CLIP_MEAN_BGR,
                 seg_pad_val: int = 0) -> None:
        if isinstance(scale, int):
            scale = (scale, scale)
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f'Letterbox scale must be S or (w, h) > 0, got {scale}')
        self.out_w, self.out_h = int(scale[0]), int(scale[1])
        self.pad_val = tuple(pad_val) if isinstance(pad_val, (list, tuple)) \
            else pad_val
        self.seg_pad_val = seg_pad_val

    def transform(self, results: Dict) -> Dict:
        """Called per sample; returns ``results`` letterboxed."""
        img = results['img']
        h, w = img.shape[:2]
        scale = min(self.out_h / h, self.out_w / w)
        nh = min(self.out_h, max(1, int(round(h * scale))))
        nw = min(self.out_w, max(1, int(round(w * scale))))
        left = (self.out_w - nw) // 2
        top = (self.out_h - nh) // 2
        pad = (left, top, self.out_w - nw - left, self.out_h - nh - top)

        img = mmcv.imresize(img, (nw, nh), interpolation='bilinear')
        results['img'] = mmcv.impad(img, padding=pad, pad_val=self.pad_val)
        for key in results.get('seg_fields', []):
            seg = results[key]
            if seg.shape[:2] != (h, w):
                raise ValueError(f"Letterbox: '{key}' has shape {seg.shape}, "
                                 f'the image {(h, w)}')
            seg = _resize_nearest(seg, (nh, nw))
            results[key] = mmcv.impad(seg, padding=pad,
                                      pad_val=self.seg_pad_val)
        results['img_shape'] = (self.out_h, self.out_w)
        results['pad_shape'] = (self.out_h, self.out_w)
        results['scale_factor'] = (nw / w, nh / h)
        results['keep_ratio'] = True
        results['letterbox'] = dict(scale=float(scale), pad=pad,
                                    resized_shape=(nh, nw), ori_shape=(h, w))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale=({self.out_w}, {self.out_h}), '
                f'pad_val={self.pad_val}, seg_pad_val={self.seg_pad_val})')
