"""Letterbox and undo_letterbox."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sera_mm.datasets.transforms import undo_letterbox
from sera_mm.datasets.transforms.letterbox import nearest_exact_indices
from sera_mm.registry import TRANSFORMS


def _random_mask(h, w, seed=0):
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    for _ in range(3):
        r0, c0 = rng.integers(0, h - 3), rng.integers(0, w - 3)
        m[r0:r0 + rng.integers(2, h // 2), c0:c0 + rng.integers(2, w // 2)] = 1
    return m


def _run(h, w, scale, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    mask = _random_mask(h, w, seed)
    t = TRANSFORMS.build(dict(type='Letterbox', scale=scale,
                              pad_val=(1, 2, 3), seg_pad_val=0))
    out = t(dict(img=img, gt_seg_map=mask.copy(), seg_fields=['gt_seg_map']))
    return img, mask, out


def test_hand_computed_landscape():
    _, _, out = _run(50, 100, 448)
    lb = out['letterbox']
    assert lb['scale'] == pytest.approx(4.48)
    assert lb['resized_shape'] == (224, 448)
    assert lb['pad'] == (0, 112, 0, 112)
    assert lb['ori_shape'] == (50, 100)
    assert out['img'].shape == (448, 448, 3)
    assert out['gt_seg_map'].shape == (448, 448)
    assert out['img_shape'] == (448, 448) and out['pad_shape'] == (448, 448)
    assert out['scale_factor'] == (4.48, 4.48)
    # pad rows hold pad_val / seg_pad_val, the content rows do not
    assert (out['img'][:112] == (1, 2, 3)).all()
    assert (out['img'][-112:] == (1, 2, 3)).all()
    assert (out['gt_seg_map'][:112] == 0).all()


@pytest.mark.parametrize('h,w,scale', [(37, 20, 64), (20, 37, 64), (33, 33, 64),
                                       (31, 50, (80, 48)), (120, 90, 64)])
def test_padding_is_centred(h, w, scale):
    _, mask, out = _run(h, w, scale)
    lb = out['letterbox']
    left, top, right, bottom = lb['pad']
    nh, nw = lb['resized_shape']
    out_w, out_h = (scale, scale) if isinstance(scale, int) else scale
    assert (nh + top + bottom, nw + left + right) == (out_h, out_w)
    assert 0 <= right - left <= 1 and 0 <= bottom - top <= 1
    assert min(left + right, top + bottom) == 0  # one side touches the border
    assert lb['scale'] == pytest.approx(min(out_h / h, out_w / w))
    assert (out['img'][:top] == (1, 2, 3)).all()
    assert (out['img'][:, :left] == (1, 2, 3)).all()
    assert out['img'].shape[:2] == out['gt_seg_map'].shape == (out_h, out_w)


@pytest.mark.parametrize('h,w', [(37, 20), (20, 37), (96, 150), (150, 97)])
def test_round_trip_recovers_an_upscaled_mask_exactly(h, w):
    _, mask, out = _run(h, w, 448)
    back = undo_letterbox(out['gt_seg_map'], out['letterbox'])
    assert back.dtype == mask.dtype
    np.testing.assert_array_equal(back, mask)
    back_t = undo_letterbox(torch.from_numpy(out['gt_seg_map'])[None],
                            out['letterbox'])
    assert back_t.shape == (1, h, w) and back_t.dtype == torch.uint8
    np.testing.assert_array_equal(back_t[0].numpy(), mask)


def test_round_trip_after_downscaling_is_close():
    mask = np.zeros((300, 200), np.uint8)
    mask[50:250, 40:160] = 1
    t = TRANSFORMS.build(dict(type='Letterbox', scale=64))
    out = t(dict(img=np.zeros((300, 200, 3), np.uint8), gt_seg_map=mask,
                 seg_fields=['gt_seg_map']))
    back = undo_letterbox(out['gt_seg_map'], out['letterbox'])
    inter = np.logical_and(back, mask).sum()
    union = np.logical_or(back, mask).sum()
    # one low-resolution pixel is ~4.7 original pixels: edges move by <= 3
    assert back.shape == mask.shape and inter / union > 0.9


def test_float_maps_use_bilinear_and_numpy_matches_torch():
    _, _, out = _run(30, 50, 64)
    lb = out['letterbox']
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(64, 64)).astype(np.float32)
    a = undo_letterbox(logits, lb)
    b = undo_letterbox(torch.from_numpy(logits)[None, None], lb)
    assert a.dtype == np.float32 and b.shape == (1, 1, 30, 50)
    np.testing.assert_allclose(a, b[0, 0].numpy(), atol=1e-4)
    left, top, _, _ = lb['pad']
    nh, nw = lb['resized_shape']
    crop = torch.from_numpy(logits)[top:top + nh, left:left + nw]
    ref = F.interpolate(crop[None, None], size=(30, 50), mode='bilinear',
                        align_corners=False)[0, 0]
    np.testing.assert_allclose(b[0, 0].numpy(), ref.numpy(), atol=1e-6)
    # constant inside the content -> constant after undoing (pad ignored)
    const = np.full((64, 64), -5.0, np.float32)
    const[top:top + nh, left:left + nw] = 2.5
    np.testing.assert_allclose(undo_letterbox(const, lb), 2.5, atol=1e-6)


@pytest.mark.parametrize('src,dst', [(7, 20), (20, 7), (13, 13), (96, 448),
                                     (448, 150)])
def test_nearest_matches_torch_nearest_exact(src, dst):
    x = torch.arange(src, dtype=torch.float32)[None, None, None]
    ref = F.interpolate(x, size=(1, dst), mode='nearest-exact')[0, 0, 0]
    np.testing.assert_array_equal(nearest_exact_indices(src, dst),
                                  ref.numpy().astype(np.int64))


def test_bool_and_wrong_size():
    _, mask, out = _run(20, 30, 64)
    lb = out['letterbox']
    back = undo_letterbox(torch.from_numpy(out['gt_seg_map']).bool(), lb)
    assert back.dtype == torch.bool
    np.testing.assert_array_equal(back.numpy(), mask.astype(bool))
    with pytest.raises(ValueError, match=r'\(64, 64\)'):
        undo_letterbox(np.zeros((32, 32), np.uint8), lb)
