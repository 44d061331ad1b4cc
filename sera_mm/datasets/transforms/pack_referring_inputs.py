"""Packs a referring sample into inputs and a SegDataSample."""
from typing import Dict, Sequence

import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs

from sera_mm.registry import TRANSFORMS

REFERRING_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'pad_shape',
                       'scale_factor', 'letterbox', 'text', 'ref_id',
                       'sent_id', 'ann_id', 'image_id', 'no_target',
                       'num_targets')


@TRANSFORMS.register_module()
class PackReferringInputs(PackSegInputs):
    """mmseg's PackSegInputs plus the sentence, and soft masks kept soft.

    Returns ``dict(inputs=C x H x W uint8 tensor, data_samples=SegDataSample)``
    whose data sample holds ``gt_sem_seg`` (1 x H x W, from ``gt_seg_map``)
    and the metainfo of ``meta_keys``, the sentence ``text`` among them (the
    model's text encoder tokenises it). An integer or bool ``gt_seg_map``
    becomes int64, as in mmseg; a floating one (the soft masks of
    ``Letterbox(mode='affine', soft_masks=True)``) becomes float32 with its
    values kept, which mmseg's int64 cast would round down.

    Required keys: ``img``, ``text`` (the sentence, a str).

    Args:
        meta_keys: keys copied to the metainfo when present; must include
            ``'text'``. Defaults to :data:`REFERRING_META_KEYS`.
    """

    def __init__(self, meta_keys: Sequence[str] = REFERRING_META_KEYS) -> None:
        if 'text' not in meta_keys:
            raise ValueError(f"PackReferringInputs: meta_keys {tuple(meta_keys)} lack 'text', "
                             'the sentence the model reads; add it')
        super().__init__(meta_keys=tuple(meta_keys))

    def transform(self, results: Dict) -> Dict:
        """Called per sample; returns the packed dict."""
        if not isinstance(results.get('text'), str):
            raise KeyError("PackReferringInputs needs 'text', the sentence (a str); got "
                           f"{type(results.get('text')).__name__} (the dataset or the "
                           'inference API provides it)')
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
        return packed
