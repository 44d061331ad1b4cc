"""Packs a referring sample into inputs and a SegDataSample."""
from typing import Dict, Sequence

from mmseg.datasets.transforms import PackSegInputs

from sera_mm.registry import TRANSFORMS

REFERRING_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'pad_shape',
                       'scale_factor', 'letterbox', 'text', 'ref_id',
                       'sent_id', 'ann_id', 'image_id')


@TRANSFORMS.register_module()
class PackReferringInputs(PackSegInputs):
    """mmseg's PackSegInputs plus the sentence.

    Returns ``dict(inputs=C x H x W uint8 tensor, data_samples=SegDataSample)``
    where the data sample holds ``gt_sem_seg`` (1 x H x W, from
    ``gt_seg_map``: letterboxed in training, original size in testing),
    ``text_tokens`` (L,) as a data field (moved by ``.to(device)``) and the
    metainfo named in ``meta_keys``.

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
        packed = super().transform(results)
        packed['data_samples'].set_data(
            dict(text_tokens=results['text_tokens']))
        return packed
