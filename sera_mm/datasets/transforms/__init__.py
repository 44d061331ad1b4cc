"""Transforms of referring segmentation samples."""
from .letterbox import Letterbox, undo_letterbox
from .load_referring_mask import LoadReferringMask, decode_segmentation
from .pack_referring_inputs import PackReferringInputs

__all__ = ['Letterbox', 'undo_letterbox', 'LoadReferringMask',
           'decode_segmentation', 'PackReferringInputs']
