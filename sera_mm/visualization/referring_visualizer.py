"""Draws a referring segmentation: the mask, its outline and the sentence."""
import textwrap
from typing import List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from sera_mm.registry import VISUALIZERS
from .fonts import caption_font

Color = Tuple[int, int, int]

#: Default overlay colour (RGB): cyan, absent from the synthetic palette and
#: rare in photographs.
PRED_COLOR: Color = (0, 230, 255)
GT_COLOR: Color = (60, 255, 60)


def mask_outline(mask: np.ndarray) -> List[np.ndarray]:
    """Outer and hole boundaries of a binary mask as M x 2 (x, y) polygons.

    Coordinates are pixel centres (+0.5), the frame in which the visualizer
    draws the image (pixel i covers [i, i + 1]).
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) + 0.5 for c in contours]


@VISUALIZERS.register_module()
class ReferringVisualizer(SegLocalVisualizer):
    """mmseg's SegLocalVisualizer, drawing what a referring sample means.

    SegLocalVisualizer paints every class, background included, labels it
    and places GT and prediction side by side, without the sentence. Here
    the predicted mask is a semi-transparent colour with a solid outline,
    the GT a dashed outline and the sentence a caption, on one picture of
    the image's size, drawn with mmengine's Visualizer primitives. The
    config's visualizer for ``tools/test.py --show-dir``; ``tools/demo.py``
    calls :meth:`draw_referring`.

    Args:
        name (str): Instance name. Defaults to 'visualizer'.
        alpha (float): Opacity of the mask fill. Defaults to 0.45.
        color (tuple): RGB colour of the predicted mask. Defaults to
            :data:`PRED_COLOR`.
        **kwargs: Other SegLocalVisualizer arguments (``vis_backends``,
            ``save_dir``, ...).
    """

    def __init__(self, name: str = 'visualizer', alpha: float = 0.45,
                 color: Sequence[int] = PRED_COLOR, **kwargs) -> None:
        super().__init__(name=name, alpha=alpha, **kwargs)
        self.color = tuple(int(c) for c in color)

    # -- caption ------------------------------------------------------------
    def _text_width(self, text: str, size_pt: float,
                    families: Sequence[str] = ('sans-serif', )) -> float:
        """Rendered width of ``text`` in pixels at ``size_pt`` points."""
        from matplotlib.font_manager import FontProperties
        renderer = self.fig_save_canvas.get_renderer()
        width, _, _ = renderer.get_text_width_height_descent(
            text, FontProperties(family=list(families), size=size_pt), ismath=False)
        return width

    def _wrap(self, text: str, size_pt: float, max_width: float,
              families: Sequence[str] = ('sans-serif', )) -> List[str]:
        """Greedy word wrap by measured width; a word longer than a line is
        broken into pieces (a sentence without spaces, such as Chinese, is
        one such word)."""
        lines: List[str] = []
        for word in text.split():
            while self._text_width(word, size_pt, families) > max_width and len(word) > 1:
                cut = max(1, int(len(word) * max_width /
                                 self._text_width(word, size_pt, families)))
                lines.append(word[:cut])
                word = word[cut:]
            if lines and self._text_width(f'{lines[-1]} {word}', size_pt,
                                          families) <= max_width:
                lines[-1] = f'{lines[-1]} {word}'
            else:
                lines.append(word)
        return lines

    def draw_caption(self, text: str, max_height_ratio: float = 0.4) -> None:
        """Writes ``text`` at the top left on a dark band, wrapped to the
        image width, in the fonts of :func:`~.fonts.caption_font`; the font
        shrinks (down to 7 px) until the caption fits in ``max_height_ratio``
        of the height, and the last line is cut with an ellipsis if it still
        does not."""
        from matplotlib.font_manager import FontProperties
        font = caption_font(text)
        text, families = font.text, font.families
        h, w = self.height, self.width
        pad = max(2.0, min(h, w) * 0.015)
        px = float(np.clip(round(min(h, w) * 0.05), 7, 28))
        line_gap = 1.25
        while True:
            size_pt = px * 72.0 / self.dpi
            lines = self._wrap(text, size_pt, w - 4 * pad, families)
            if len(lines) * px * line_gap <= max_height_ratio * h or px <= 7:
                break
            px -= 1
        max_lines = max(1, int(max_height_ratio * h // (px * line_gap)))
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = textwrap.shorten(lines[-1] + ' …', width=max(1, len(lines[-1])),
                                         placeholder='…')
        # Visualizer.draw_texts takes one family name per text, not a
        # fallback chain: the text is placed on its axes directly. '$' is
        # escaped, or a sentence with two of them would be drawn as math.
        self.ax_save.text(
            2 * pad, 2 * pad, '\n'.join(lines).replace('$', r'\$'),
            fontproperties=FontProperties(family=list(families), size=size_pt),
            color='white', verticalalignment='top', horizontalalignment='left',
            # a text box's pad is a fraction of the font size
            bbox=dict(facecolor='black', alpha=0.6, edgecolor='none',
                      boxstyle=f'square,pad={pad / px:.3f}'))

    # -- masks --------------------------------------------------------------
    def draw_outline(self, mask: np.ndarray, color: Sequence[int],
                     dashed: bool = False) -> None:
        """Draws the boundary of ``mask`` (H x W) as solid or dashed lines."""
        polygons = mask_outline(mask)
        if not polygons:
            return
        width_px = max(1.5, min(self.height, self.width) / 160)
        self.draw_polygons(polygons, edge_colors=tuple(color),
                           line_styles='--' if dashed else '-',
                           line_widths=width_px * 72.0 / self.dpi, alpha=1.0)

    def draw_referring(self,
                       image: np.ndarray,
                       mask: Optional[np.ndarray],
                       sentence: Optional[str] = None,
                       gt_mask: Optional[np.ndarray] = None,
                       color: Optional[Sequence[int]] = None) -> np.ndarray:
        """Draws one referring sample; called by the demo and by
        :meth:`add_datasample`.

        Args:
            image (np.ndarray): H x W x 3 uint8 RGB.
            mask (np.ndarray, optional): H x W predicted mask (bool or 0/1),
                a semi-transparent fill plus a solid outline.
            sentence (str, optional): Caption, drawn at the top left.
            gt_mask (np.ndarray, optional): H x W ground truth, a dashed
                outline.
            color (tuple, optional): RGB of the prediction. Defaults to the
                visualizer's ``color``.

        Returns:
            np.ndarray: H x W x 3 uint8 RGB, the image's own size.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'ReferringVisualizer: image must be H x W x 3 RGB, '
                             f'got shape {image.shape}')
        color = tuple(color) if color is not None else self.color
        self.set_image(image)
        for name, m in (('mask', mask), ('gt_mask', gt_mask)):
            if m is not None and m.shape != image.shape[:2]:
                raise ValueError(f'ReferringVisualizer: {name} has shape {m.shape}, '
                                 f'the image {image.shape[:2]}')
        if mask is not None:
            mask = np.asarray(mask).astype(bool)
            self.draw_binary_masks(mask, colors=color, alphas=self.alpha)
            self.draw_outline(mask, color)
        if gt_mask is not None:
            self.draw_outline(np.asarray(gt_mask).astype(bool), GT_COLOR, dashed=True)
        if sentence:
            self.draw_caption(sentence)
        drawn = self.get_image()
        assert drawn.shape == image.shape, (drawn.shape, image.shape)
        return drawn

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[SegDataSample] = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0,
                       with_labels: Optional[bool] = True) -> None:
        """Draws a predicted sample (called by ``SegVisualizationHook``):
        prediction filled, GT dashed, the sentence of its ``text`` metainfo
        as the caption; shows it, writes ``out_file`` or sends it to the
        backends, as SegLocalVisualizer does. ``with_labels`` is unused."""
        pred = gt = None
        sentence = None
        if data_sample is not None:
            sentence = data_sample.metainfo.get('text')
            if draw_pred and 'pred_sem_seg' in data_sample:
                pred = data_sample.pred_sem_seg.data[0].cpu().numpy()
            if draw_gt and 'gt_sem_seg' in data_sample:
                gt = data_sample.gt_sem_seg.data[0].cpu().numpy()
                if gt.shape != image.shape[:2]:
                    gt = None  # a letterboxed training GT: not in this frame
        drawn = self.draw_referring(image, pred, sentence, gt_mask=gt)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)
