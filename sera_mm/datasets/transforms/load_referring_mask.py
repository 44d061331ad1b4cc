"""Decodes the referent's COCO segmentation into a binary mask."""
from typing import Any, Dict

import numpy as np
from mmcv.transforms import BaseTransform
from pycocotools import mask as mask_utils

from sera_mm.registry import TRANSFORMS


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """Decodes a COCO segmentation with pycocotools.

    Args:
        seg: polygons (list of [x1, y1, ...], one or several parts),
            uncompressed RLE (dict with ``counts`` list) or compressed RLE
            (dict with ``counts`` str or bytes).
        height, width: image size the segmentation refers to.

    Returns:
        height x width uint8 mask with values in {0, 1}.
    """
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get('counts'), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict):
        rle = seg
    else:
        raise ValueError('segmentation must be polygons (list) or RLE (dict), '
                         f'got {type(seg).__name__}')
    mask = mask_utils.decode(rle)
    if mask.shape != (height, width):
        raise ValueError(f'decoded mask has shape {mask.shape}, expected '
                         f'({height}, {width})')
    return mask.astype(np.uint8)


@TRANSFORMS.register_module()
class LoadReferringMask(BaseTransform):
    """Loads the referent's mask at the original image size.

    Required keys: ``segmentation``, ``height``, ``width`` (from the dataset).
    Added keys: ``gt_seg_map`` (H x W uint8 in {0, 1}); ``'gt_seg_map'`` is
    appended to ``seg_fields`` so that later geometric transforms (e.g.
    :class:`Letterbox`) move it with the image.

    Put it before ``Letterbox`` in training (GT letterboxed with the image)
    and after it in testing (GT stays at the original size for the metric).
    """

    def transform(self, results: Dict) -> Dict:
        """Called per sample; returns ``results`` with ``gt_seg_map``."""
        for key in ('segmentation', 'height', 'width'):
            if key not in results:
                raise KeyError(f"LoadReferringMask needs key '{key}' in the "
                               'data info (given by RefCOCODataset)')
        try:
            mask = decode_segmentation(results['segmentation'],
                                       int(results['height']),
                                       int(results['width']))
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
