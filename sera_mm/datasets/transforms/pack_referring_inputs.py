"""Packs a referring sample into inputs and a SegDataSample."""
from typing import Dict, Sequence

import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs

from sera_mm.registry import TRANSFORMS

REFERRING_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'pad_shape',
                       'scale_factor', 'letterbox', 'text', 'ref_id',
                       'sent_id', 'ann_id', 'image_id')


@TRANSFORMS.register_module()
class PackReferringInputs(PackSegInputs):
    """mmseg's PackSegInputs plus the sentence, and soft masks kept soft.

    Returns ``dict(inputs=C x H x W uint8 tensor, data_samples=SegDataSample)``
    where the data sample holds ``gt_sem_seg`` (1 x H x W, from
    ``gt_seg_map``: letterboxed in training, original size in testing),
    ``text_tokens`` (L,) as a data field (moved by ``.to(device)``) and the
    metainfo named in ``meta_keys``.

    An integer or bool ``gt_seg_map`` becomes int64, as in mmseg. A floating
    one (the soft masks of ``Letterbox(mode='affine', soft_masks=True)``)
    becomes float32 with its values kept: mmseg's int64 cast would round
    every soft value down to 0 (or 1 on the object's interior).

    Required keys: ``img``, ``text_tokens`` (from :class:`TokenizeText`).

    Args:
        meta_keys: keys copied to the metainfo when present. Defaults to the
            image keys and text, ref_id, sent_id, ann_id, image_id, letterbox.
    """

    def __init__(self, meta_keys: Sequence[str] = REFERRING_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))

    def transform(self, results: Dict) -> Dict:
        """Called per sample; returns the packed dict."""
        if 'text_tokens' not in results:
            raise KeyError("PackReferringInputs needs 'text_tokens'; put "
                           'TokenizeText before it in the pipeline')
        gt = results.get('gt_seg_map')
        soft = gt is not None and np.issubdtype(np.asarray(gt).dtype, np.floating)
        if soft:
            results = {k: v for k, v in results.items() if k != 'gt_seg_map'}
        packed = super().transform(results)
        if soft:
            gt = np.asarray(gt, dtype=np.float32)
            if gt.ndim == 2:
                gt = gt[None]
            packed['data_samples'].gt_sem_seg = PixelData(
                data=torch.from_numpy(np.ascontiguousarray(gt)))
        packed['data_samples'].set_data(
            dict(text_tokens=results['text_tokens']))
        return packed
