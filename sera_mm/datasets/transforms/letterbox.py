"""The Letterbox transform: keep the aspect ratio, centre on a padding colour
(the geometry and its inverse are :mod:`sera_mm.utils.letterbox`'s)."""
import numbers
from typing import Dict, List, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from sera_mm.registry import TRANSFORMS
from sera_mm.utils.letterbox import (LETTERBOX_MODES, affine_letterbox_matrices, resize_nearest,
                                     warp_hw, warp_nearest)

#: CLIP's mean colour (RGB 122.8, 116.7, 104.1) in BGR order, the channel
#: order of mmcv's LoadImageFromFile.
CLIP_MEAN_BGR = (104, 117, 123)


def _is_whole(v) -> bool:
    """A number with an integer value (448 or 448.0), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and \
        float(v).is_integer()


def _matrix_list(m: np.ndarray) -> List[List[float]]:
    """A 2 x 3 matrix as nested lists of Python floats (exact float64)."""
    return [[float(v) for v in row] for row in m]


@TRANSFORMS.register_module()
class Letterbox(BaseTransform):
    """Scales keeping the aspect ratio to fit a fixed size, centred on a pad.

    The scale is ``s = min(S_h / h, S_w / w)`` in both modes; ``mode``
    decides how the image and the masks of ``seg_fields`` are resampled:

    * ``mode='resize'`` (the default): the image is resized (bilinear) to
      ``round(h * s) x round(w * s)``, masks with pixel-centre nearest (they
      stay binary), and both are padded with integer margins split evenly
      (the odd pixel goes right / bottom).
    * ``mode='affine'`` (DETRIS's protocol): one ``cv2.warpAffine`` maps the
      image corners onto the centred ``h * s x w * s`` box (offsets may be
      half pixels), the image with INTER_CUBIC and ``pad_val`` as border.
      Masks are warped with INTER_NEAREST (binary, same dtype), or, with
      ``soft_masks=True``, as DETRIS's training masks: 255 * mask (uint8)
      warped with INTER_LINEAR (border 0) and divided by 255, float32 in
      [0, 1]. Reproducing DETRIS bit-exactly takes the BGR photo (its warp
      is per channel) and the CLIP mean colour in BGR order as ``pad_val``.

    Required keys: ``img``. Modified: ``img``, every key of ``seg_fields``.
    Added: ``img_shape``, ``pad_shape``, ``scale_factor`` (w, h),
    ``keep_ratio`` and ``letterbox``, all that ``undo_letterbox`` needs:
    ``dict(mode='resize', scale, pad=(left, top, right, bottom),
    resized_shape=(h', w'), ori_shape=(h, w))`` or ``dict(mode='affine',
    scale, matrix, inverse, ori_shape=(h, w), out_shape=(S_h, S_w))``, the
    2 x 3 matrices as nested lists of Python floats (exact, JSON friendly).

    Args:
        scale: output size, an int S (S x S) or (w, h). Defaults to 448.
        pad_val: image padding value, a number or one per channel, in the
            image's channel order. Defaults to CLIP's mean colour in BGR,
            rounded (OpenCV rounds DETRIS's exact (104.09373615,
            116.7460125, 122.7709383) to the same uint8 colour).
        seg_pad_val: padding value of masks. Defaults to 0 (background).
        mode: ``'resize'`` or ``'affine'``. Defaults to ``'resize'``.
        soft_masks: in ``'affine'`` mode only, turn 0/1 masks into DETRIS's
            soft float32 masks (needs ``seg_pad_val=0``, DETRIS's border).
            Defaults to False.
    """

    def __init__(self,
                 scale: Union[int, Sequence[int]] = 448,
                 pad_val: Union[float, Sequence[float]] = CLIP_MEAN_BGR,
                 seg_pad_val: int = 0,
                 mode: str = 'resize',
                 soft_masks: bool = False) -> None:
        if _is_whole(scale):
            scale = (scale, scale)
        if not isinstance(scale, (list, tuple)) or len(scale) != 2 or \
                not all(_is_whole(v) and v > 0 for v in scale):
            raise ValueError(f'Letterbox scale must be an int S or (w, h) of '
                             f'ints > 0, got {scale!r}')
        if mode not in LETTERBOX_MODES:
            raise ValueError(f'Letterbox mode must be one of {LETTERBOX_MODES}, '
                             f'got {mode!r}')
        if not isinstance(soft_masks, bool):
            raise TypeError(f'Letterbox soft_masks must be a bool, got {soft_masks!r}')
        if soft_masks and mode != 'affine':
            raise ValueError("Letterbox soft_masks=True needs mode='affine' "
                             "(DETRIS's warp); mode='resize' keeps masks binary")
        if isinstance(pad_val, (list, tuple)):
            if not pad_val or not all(isinstance(v, numbers.Real) for v in pad_val):
                raise ValueError(f'Letterbox pad_val must be a number or one '
                                 f'number per channel, got {pad_val!r}')
            pad_val = tuple(pad_val)
        elif not isinstance(pad_val, numbers.Real):
            raise ValueError(f'Letterbox pad_val must be a number or one '
                             f'number per channel, got {pad_val!r}')
        if not isinstance(seg_pad_val, numbers.Real):
            raise ValueError(f'Letterbox seg_pad_val must be a number, got {seg_pad_val!r}')
        if soft_masks and seg_pad_val != 0:
            raise ValueError('Letterbox soft_masks=True pads masks with 0, as '
                             f'DETRIS; seg_pad_val must be 0, got {seg_pad_val!r}')
        self.out_w, self.out_h = int(scale[0]), int(scale[1])
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.mode = mode
        self.soft_masks = soft_masks

    def _check_seg(self, key: str, seg: np.ndarray, hw: Tuple[int, int]) -> None:
        if seg.shape[:2] != hw:
            raise ValueError(f"Letterbox: '{key}' has shape {seg.shape}, "
                             f'the image {hw}')

    def transform(self, results: Dict) -> Dict:
        """Called per sample; returns ``results`` letterboxed."""
        img = results['img']
        h, w = img.shape[:2]
        if self.mode == 'affine':
            meta = self._affine(results, h, w)
        else:
            meta = self._resize(results, h, w)
        results['img_shape'] = (self.out_h, self.out_w)
        results['pad_shape'] = (self.out_h, self.out_w)
        results['keep_ratio'] = True
        results['letterbox'] = meta
        return results

    def _resize(self, results: Dict, h: int, w: int) -> Dict:
        """``mode='resize'``: bilinear resize and integer padding."""
        scale = min(self.out_h / h, self.out_w / w)
        nh = min(self.out_h, max(1, int(round(h * scale))))
        nw = min(self.out_w, max(1, int(round(w * scale))))
        left = (self.out_w - nw) // 2
        top = (self.out_h - nh) // 2
        pad = (left, top, self.out_w - nw - left, self.out_h - nh - top)

        img = mmcv.imresize(results['img'], (nw, nh), interpolation='bilinear')
        results['img'] = mmcv.impad(img, padding=pad, pad_val=self.pad_val)
        for key in results.get('seg_fields', []):
            seg = results[key]
            self._check_seg(key, seg, (h, w))
            seg = resize_nearest(seg, (nh, nw))
            results[key] = mmcv.impad(seg, padding=pad,
                                      pad_val=self.seg_pad_val)
        results['scale_factor'] = (nw / w, nh / h)
        return dict(mode='resize', scale=float(scale), pad=pad,
                    resized_shape=(nh, nw), ori_shape=(h, w))

    def _affine(self, results: Dict, h: int, w: int) -> Dict:
        """``mode='affine'``: DETRIS's warp of the image and the masks."""
        scale, matrix, inverse = affine_letterbox_matrices(
            (h, w), (self.out_h, self.out_w))
        dsize = (self.out_w, self.out_h)
        img = results['img']
        if img.dtype == np.float64:  # warp in float32, as undo_letterbox does
            img = warp_hw(img.astype(np.float32), matrix, dsize,
                          cv2.INTER_CUBIC, self.pad_val).astype(np.float64)
        else:
            img = warp_hw(img, matrix, dsize, cv2.INTER_CUBIC, self.pad_val)
        results['img'] = img
        for key in results.get('seg_fields', []):
            seg = np.asarray(results[key])
            self._check_seg(key, seg, (h, w))
            if self.soft_masks:
                results[key] = self._soft_mask(key, seg, matrix, dsize)
            else:
                results[key] = warp_nearest(seg, matrix, dsize, self.seg_pad_val)
        results['scale_factor'] = (float(scale), float(scale))
        return dict(mode='affine', scale=float(scale),
                    matrix=_matrix_list(matrix), inverse=_matrix_list(inverse),
                    ori_shape=(h, w), out_shape=(self.out_h, self.out_w))

    @staticmethod
    def _soft_mask(key: str, seg: np.ndarray, matrix: np.ndarray,
                   dsize: Tuple[int, int]) -> np.ndarray:
        """DETRIS's training mask: warp 255 * mask bilinearly, divide by 255.

        The division is done in float64 and then rounded to float32, as
        DETRIS divides the uint8 array by ``255.`` and casts the tensor.
        """
        if np.issubdtype(seg.dtype, np.integer):
            binary = not seg.size or (seg.min() >= 0 and seg.max() <= 1)
        else:
            binary = seg.dtype == np.bool_ or bool(np.isin(seg, (0, 1)).all())
        if not binary:
            raise ValueError(f"Letterbox soft_masks: '{key}' must hold only 0 "
                             f'and 1, got values {np.unique(seg)[:8].tolist()}')
        mask255 = seg.astype(np.uint8) * np.uint8(255)
        warped = warp_hw(mask255, matrix, dsize, cv2.INTER_LINEAR, 0.)
        return (warped.astype(np.float64) / 255.).astype(np.float32)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale=({self.out_w}, {self.out_h}), '
                f'pad_val={self.pad_val}, seg_pad_val={self.seg_pad_val}, '
                f'mode={self.mode!r}, soft_masks={self.soft_masks})')
