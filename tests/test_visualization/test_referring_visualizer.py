"""ReferringVisualizer and make_contact_sheet on hand-made images."""
import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.registry import VISUALIZERS
from sera_mm.visualization import (GT_COLOR, ReferringVisualizer, make_contact_sheet,
                                   mask_outline)

H, W = 61, 83
TOP, BOTTOM, LEFT, RIGHT = 20, 45, 30, 70  # the mask: rows [20, 45), cols [30, 70)


@pytest.fixture(scope='module')
def visualizer():
    return ReferringVisualizer(name='test_referring_visualizer', alpha=0.5)


def _scene():
    img = np.full((H, W, 3), 100, np.uint8)
    img[:, ::2] = 140  # stripes: a resampled image would blur them
    mask = np.zeros((H, W), bool)
    mask[TOP:BOTTOM, LEFT:RIGHT] = True
    return img, mask


def _ring(margin_in: int, margin_out: int) -> np.ndarray:
    """Pixels at least ``margin_in`` inside (True) / ``margin_out`` outside."""
    inner = np.zeros((H, W), bool)
    inner[TOP + margin_in:BOTTOM - margin_in, LEFT + margin_in:RIGHT - margin_in] = True
    outer = np.ones((H, W), bool)
    outer[TOP - margin_out:BOTTOM + margin_out, LEFT - margin_out:RIGHT + margin_out] = False
    return inner, outer


def test_fill_is_an_exact_blend_and_the_rest_is_untouched(visualizer):
    img, mask = _scene()
    drawn = visualizer.draw_referring(img, mask).astype(int)
    assert drawn.shape == img.shape
    inner, outer = _ring(3, 3)
    blend = np.round(0.5 * img + 0.5 * np.array(visualizer.color)).astype(int)
    np.testing.assert_array_equal(drawn[inner], blend[inner])
    np.testing.assert_array_equal(drawn[outer], img[outer])


def test_outline_follows_the_mask_boundary(visualizer):
    img, mask = _scene()
    drawn = visualizer.draw_referring(img, mask).astype(int)
    color = np.array(visualizer.color)
    edge = drawn[TOP, LEFT + 5:RIGHT - 5]  # the top boundary row
    inside = drawn[TOP + 5, LEFT + 5:RIGHT - 5]
    assert np.abs(edge - color).max() <= 40
    assert np.abs(edge - color).sum() < np.abs(inside - color).sum()
    # polygons at pixel centres, one outer boundary for a rectangle
    (poly,) = mask_outline(mask)
    assert poly.min(0).tolist() == [LEFT + 0.5, TOP + 0.5]
    assert poly.max(0).tolist() == [RIGHT - 0.5, BOTTOM - 0.5]


def test_caption_is_drawn_at_the_top_left_only(visualizer):
    img, mask = _scene()
    plain = visualizer.draw_referring(img, mask).astype(int)
    captioned = visualizer.draw_referring(img, mask, 'the red circle on the left').astype(int)
    assert np.abs(captioned[:8, :30] - plain[:8, :30]).max() > 50
    np.testing.assert_array_equal(captioned[H // 2 + 20:], plain[H // 2 + 20:])


@pytest.mark.parametrize('shape', [(1, 1), (7, 3), (37, 23), (301, 199), (480, 641)])
def test_output_keeps_any_image_size(visualizer, shape):
    img = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    mask = np.zeros(shape, bool)
    mask[shape[0] // 3:, : max(1, shape[1] // 2)] = True
    long_sentence = 'the small purple triangle just below the second biggest circle ' * 3
    assert visualizer.draw_referring(img, mask, long_sentence).shape == img.shape


def test_errors_name_the_wrong_input(visualizer):
    img, mask = _scene()
    with pytest.raises(ValueError, match='mask has shape'):
        visualizer.draw_referring(img, mask[:-1])
    with pytest.raises(ValueError, match='H x W x 3'):
        visualizer.draw_referring(img[..., 0], mask)


def test_add_datasample_draws_prediction_and_gt(tmp_path):
    visualizer = VISUALIZERS.build(dict(type='ReferringVisualizer',
                                        name='test_add_datasample', alpha=0.5))
    img, mask = _scene()
    gt = np.zeros((H, W), np.int64)
    gt[48:58, 5:15] = 1  # bottom left: clear of the caption and the mask
    sample = SegDataSample(metainfo=dict(text='the thing'))
    sample.pred_sem_seg = PixelData(data=torch.from_numpy(mask[None].astype(np.int64)))
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt[None]))
    out = str(tmp_path / 'drawn.png')
    visualizer.add_datasample('x', img, sample, out_file=out)
    drawn = cv2.cvtColor(cv2.imread(out), cv2.COLOR_BGR2RGB).astype(int)
    assert drawn.shape == img.shape
    inner, _ = _ring(3, 3)
    assert np.abs(drawn[inner] - np.round(0.5 * img + 0.5 * np.array(visualizer.color))[inner]
                  ).max() == 0
    # the GT's dashed outline: some pixel of its right edge takes the GT colour
    assert np.abs(drawn[48:58, 14] - np.array(GT_COLOR)).sum(1).min() <= 60


def test_contact_sheet_places_each_image_in_its_cell():
    a = np.full((64, 64, 3), 10, np.uint8)
    b = np.full((32, 64, 3), 200, np.uint8)  # scaled to 64 x 128 -> fits 64: 32 x 64
    c = np.full((20, 10, 3), 90, np.uint8)   # upscaled to 64 x 32
    sheet = make_contact_sheet([a, b, c], cell=64, gap=4)
    assert sheet.shape == (2 * 68 + 4, 2 * 68 + 4, 3)
    np.testing.assert_array_equal(sheet[4:68, 4:68], a)
    # b is centred vertically in cell (0, 1): rows 4 + 16 .. 4 + 48
    assert (sheet[20:52, 72:136] == 200).all() and (sheet[4:20, 72:136] == 255).all()
    # c is centred horizontally in cell (1, 0): cols 4 + 16 .. 4 + 48
    assert (sheet[72:136, 20:52] == 90).all() and (sheet[72:136, 4:20] == 255).all()
    assert (sheet[72:136, 72:136] == 255).all()  # empty last cell
