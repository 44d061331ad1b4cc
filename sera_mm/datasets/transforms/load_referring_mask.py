"""Decodes the referent's COCO segmentation into a binary mask."""
from typing import Any, Dict

import numpy as np
from mmcv.transforms import BaseTransform
from pycocotools import mask as mask_utils

from sera_mm.registry import TRANSFORMS


def _polygon_bound(height: int, width: int) -> float:
    """The largest |coordinate| a polygon of a ``height`` x ``width`` image
    may have.

    COCO polygons stray a little outside the image (pycocotools clips them),
    but pycocotools rasterises the whole polygon, allocating in proportion to
    its extent: a far-off point (1e9) exhausts memory or crashes it. Twice
    the larger side plus 16 pixels admits every genuine stray point while
    bounding that allocation to a small multiple of the image.
    """
    return 2.0 * max(height, width) + 16


def _rle_length(counts: Any) -> int:
    """Returns the number of pixels a COCO RLE ``counts`` covers (sum of its
    runs); raises ValueError if ``counts`` is not a valid run list or
    compressed string (pycocotools' ``rleFrString`` encoding)."""
    if isinstance(counts, list):
        arr = np.asarray(counts) if counts else np.zeros(0, np.int64)
        if arr.ndim != 1 or arr.dtype.kind not in 'iu' or (arr < 0).any():
            raise ValueError('RLE counts must be non-negative integers')
        return int(arr.sum())
    if isinstance(counts, str):
        counts = counts.encode('utf-8')
    if not isinstance(counts, bytes):
        raise ValueError('RLE counts must be a list or a string, got '
                         f'{type(counts).__name__}')
    codes = np.frombuffer(counts, np.uint8)
    codes = codes.astype(np.int64) - 48
    if not codes.size:
        return 0
    if ((codes < 0) | (codes >= 64)).any():
        bad = counts[int(np.flatnonzero((codes < 0) | (codes >= 64))[0])]
        raise ValueError(f'compressed RLE counts hold the byte {bad:#04x}')
    # Each run is 5-bit groups, least significant first, 0x20 meaning "more
    # follows", 0x10 of the last group the sign; from the fourth run on, a
    # run is stored as its difference to the run two before.
    end = (codes & 0x20) == 0
    if not end[-1]:
        raise ValueError('compressed RLE counts end inside a number')
    starts = np.flatnonzero(np.concatenate(([True], end[:-1])))
    k = np.arange(codes.size) - np.repeat(starts, np.diff(np.append(starts, codes.size)))
    if k.max() > 6:  # 35 bits: no image has that many pixels
        raise ValueError('compressed RLE counts hold a run of more than 7 digits')
    x = np.add.reduceat((codes & 0x1f) << (5 * k), starts)
    x -= np.where(codes[end] & 0x10, 1 << (5 * (k[end] + 1)), 0)
    odd, even = np.cumsum(x[1::2]), np.cumsum(x[2::2])
    if x[0] < 0 or (odd < 0).any() or (even < 0).any():
        raise ValueError('compressed RLE counts decode to a negative run')
    return int(x[0] + odd.sum() + even.sum())


def validate_segmentation(seg: Any, height: int, width: int,
                          where: str = 'segmentation') -> None:
    """Raises ValueError (message starting with ``where``) if ``seg`` is
    not a COCO segmentation that pycocotools decodes safely into an image
    of ``height`` x ``width``: polygons of finite, bounded coordinates, or
    an RLE of that size whose runs cover exactly height * width pixels."""
    if isinstance(seg, list):
        if not seg:
            raise ValueError(f'{where}: empty polygon list')
        bound = _polygon_bound(height, width)
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or len(poly) % 2 or len(poly) < 6:
                n = len(poly) if isinstance(poly, list) else type(poly).__name__
                raise ValueError(
                    f'{where}: polygon {k} has {n} coordinates; need an even '
                    'count of at least 6 (3 points)')
            try:
                # sum() refuses non-numbers and is NaN if one is (min and max
                # are unreliable then); infinities fail the bounds
                total = sum(poly)
                ok = total == total and -bound <= min(poly) \
                    and max(poly) <= bound
            except TypeError:
                raise ValueError(f'{where}: polygon {k} holds a coordinate '
                                 'that is not a number') from None
            if not ok:
                bad = next(v for v in poly if not -bound <= v <= bound)
                raise ValueError(
                    f'{where}: polygon {k} has the coordinate {bad!r}; '
                    f'coordinates must be finite and within +-{bound:g} '
                    f'for a {height} x {width} image')
    elif isinstance(seg, dict):
        if 'counts' not in seg or 'size' not in seg:
            raise ValueError(f"{where}: RLE needs keys 'counts' and 'size'")
        if list(seg['size']) != [height, width]:
            raise ValueError(
                f'{where}: RLE size {list(seg["size"])} differs from the '
                f'image size [{height}, {width}]')
        try:
            n = _rle_length(seg['counts'])
        except ValueError as e:
            raise ValueError(f'{where}: {e}') from None
        if n != height * width:
            raise ValueError(
                f'{where}: RLE counts cover {n} pixels, but the image has '
                f'{height} x {width} = {height * width}')
    else:
        raise ValueError(f'{where}: segmentation must be polygons (list) or '
                         f'RLE (dict), got {type(seg).__name__}')


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """Decodes a COCO segmentation with pycocotools.

    Args:
        seg: polygons (list of [x1, y1, ...], one or several parts),
            uncompressed RLE (dict with ``counts`` list) or compressed RLE
            (dict with ``counts`` str or bytes).
        height, width: image size the segmentation refers to.

    Returns:
        height x width uint8 mask with values in {0, 1}.

    Raises:
        ValueError: ``seg`` fails :func:`validate_segmentation`, checked
            first (pycocotools reads past a short RLE and rasterises a
            far-off polygon point without bound).
    """
    validate_segmentation(seg, height, width)
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg['counts'], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = seg
    return mask_utils.decode(rle).astype(np.uint8)


@TRANSFORMS.register_module()
class LoadReferringMask(BaseTransform):
    """Loads the referent's mask at the original image size.

    Required keys: ``segmentation`` (one COCO segmentation, RefCOCODataset)
    or ``segmentations`` (a list of them, GRefCOCODataset: the mask is their
    union, all zeros for an empty list), ``height``, ``width``.
    Added keys: ``gt_seg_map`` (H x W uint8 in {0, 1}), appended to
    ``seg_fields`` so that later geometric transforms move it with the
    image. Put it before ``Letterbox`` in training (GT letterboxed with the
    image) and after it in testing (GT at the original size for the metric).
    """

    def transform(self, results: Dict) -> Dict:
        """Called per sample; returns ``results`` with ``gt_seg_map``."""
        many = 'segmentations' in results
        for key in ('segmentations' if many else 'segmentation', 'height', 'width'):
            if key not in results:
                raise KeyError(f"LoadReferringMask needs key '{key}' in the "
                               'data info (given by RefCOCODataset)')
        hw = int(results['height']), int(results['width'])
        try:
            segs = results['segmentations'] if many else [results['segmentation']]
            mask = np.zeros(hw, np.uint8)
            for seg in segs:
                mask |= decode_segmentation(seg, *hw)
        except Exception as e:
            raise ValueError(f'cannot decode the segmentation of ann_id '
                             f'{results.get("ann_id")} ({results.get("img_path")}): '
                             f'{e}') from e
        image_hw = _image_size(results)
        if image_hw is not None and image_hw != mask.shape:
            raise ValueError(
                f'{results.get("img_path")}: the image is {image_hw} (h, w) '
                f'but instances.json gives {mask.shape} for image_id '
                f'{results.get("image_id")} (ann_id {results.get("ann_id")})')
        results['gt_seg_map'] = mask
        seg_fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in seg_fields:
            seg_fields.append('gt_seg_map')
        return results


def _image_size(results: Dict) -> Any:
    """(h, w) of the loaded image as read from the file: ``ori_shape`` (set
    by LoadImageFromFile, kept by Letterbox), else the image array's; None
    when no image was loaded."""
    if results.get('ori_shape') is not None:
        return tuple(int(v) for v in results['ori_shape'][:2])
    if results.get('img') is not None:
        return tuple(results['img'].shape[:2])
    return None
