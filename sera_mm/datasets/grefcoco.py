"""gRefCOCO (generalized referring segmentation, GRES) as an mmengine dataset."""
from typing import Dict

from sera_mm.registry import DATASETS
from .refcoco import RefCOCODataset
from .transforms.load_referring_mask import validate_segmentation

#: gRefCOCO's ``ann_id`` of a sentence that names no object
NO_TARGET = -1


@DATASETS.register_module()
class GRefCOCODataset(RefCOCODataset):
    """gRefCOCO's sentences, which name one object, several or none.

    Reads gRefCOCO as distributed (paths relative to ``data_root``)::

        data/coco/train2014/                     images
        data/coco/grefcoco/instances.json        COCO images + annotations
        data/coco/grefcoco/grefs(unc).json       refs (or grefs(unc).p)

    A ref's ``ann_id`` is a list of annotation ids, ``[-1]`` when the
    sentence names nothing. Everything else (splits, the sentence drawn per
    epoch in training, one sample per sentence in ``test_mode``, the checks
    at construction) is :class:`RefCOCODataset`'s. A sample holds
    ``segmentations`` (the listed instances' COCO segmentations, crowd
    regions left out as in the GRES reference loader, ``[]`` for no target;
    ``LoadReferringMask`` paints their union), ``no_target`` (bool) and
    ``num_targets`` (the instances painted, 0 for no target); ``ann_id``
    stays the ref's list. A ref whose list is empty, mixes -1 with ids,
    names an id missing from ``instances.json`` (or of another image), or
    lists only crowd regions is refused at construction, naming the ref.

    Args: those of :class:`RefCOCODataset`; ``split_file`` is
    ``grefs(<by>).json`` or ``grefs(<by>).p``.
    """

    SPLIT_FILE_GLOB = 'grefs(*).*'

    def parse_targets(self, ref: dict, where: str, anns: Dict[int, dict],
                      height: int, width: int) -> dict:
        """Returns a gRefCOCO ref's ``ann_id``, ``category_id``,
        ``segmentations``, ``no_target`` and ``num_targets``; called by
        :meth:`parse_ref` for each ref."""
        ann_ids = ref['ann_id']
        if not isinstance(ann_ids, list) or not ann_ids:
            raise ValueError(f'{where}: ann_id must be a non-empty list of '
                             f'annotation ids ([-1] for no target), got '
                             f'{ann_ids!r}')
        category_id = ref.get('category_id')
        if ann_ids == [NO_TARGET]:
            return dict(ann_id=ann_ids, category_id=category_id,
                        segmentations=[], no_target=True, num_targets=0)
        if NO_TARGET in ann_ids:
            raise ValueError(f'{where}: ann_id {ann_ids} mixes -1 (no target) '
                             'with annotation ids; give [-1] or the ids')
        segs, seen = [], set()
        for ann_id in ann_ids:
            ann = self._find_ann(ann_id, where, anns, ref['image_id'])
            if ann_id not in seen and not ann.get('iscrowd', 0):
                seen.add(ann_id)
                seg = ann.get('segmentation')
                validate_segmentation(seg, height, width,
                                      f'{self.ann_file}: annotation {ann_id}')
                segs.append(seg)
        if not segs:
            raise ValueError(f'{where}: every instance of ann_id {ann_ids} is '
                             'a crowd region (iscrowd=1), left out of the mask; '
                             'list a non-crowd instance or [-1]')
        return dict(ann_id=ann_ids, category_id=category_id,
                    segmentations=segs, no_target=False, num_targets=len(segs))
