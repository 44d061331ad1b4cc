"""Transforms of referring segmentation samples."""
from sera_mm.utils.letterbox import undo_letterbox
from .letterbox import Letterbox
from .load_referring_mask import LoadReferringMask, decode_segmentation
from .pack_referring_inputs import PackReferringInputs

__all__ = ['Letterbox', 'undo_letterbox', 'LoadReferringMask',
           'decode_segmentation', 'PackReferringInputs']
