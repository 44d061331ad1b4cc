"""Drawing referring segmentations (importing registers the visualizer)."""
from .contact_sheet import make_contact_sheet
from .fonts import MissingGlyphWarning, caption_font
from .referring_visualizer import (GT_COLOR, PRED_COLOR, ReferringVisualizer,
                                   mask_outline)

__all__ = ['ReferringVisualizer', 'make_contact_sheet', 'mask_outline',
           'PRED_COLOR', 'GT_COLOR', 'MissingGlyphWarning', 'caption_font']
