"""Letterbox and undo_letterbox."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sera_mm.datasets.transforms import undo_letterbox
from sera_mm.registry import TRANSFORMS
from sera_mm.utils.letterbox import nearest_exact_indices
from helpers.detris_reference import detris_letterbox_matrices


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


# --- mode='affine': DETRIS's protocol ------------------------------------------
import json  # noqa: E402
import pickle  # noqa: E402

import cv2  # noqa: E402

from sera_mm.datasets.transforms import Letterbox  # noqa: E402

S = 448
#: DETRIS's border, the CLIP mean as RGB in [0, 255]; BGR for sera_mm.
DETRIS_BORDER_RGB = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
DETRIS_BORDER_BGR = tuple(DETRIS_BORDER_RGB[::-1])
#: (h, w): landscape, portrait, square, COCO-like odd sizes, tiny, elongated.
SHAPES = [(333, 500), (500, 333), (375, 500), (500, 375), (427, 640),
          (640, 427), (480, 640), (640, 480), (300, 300), (448, 448),
          (7, 5), (5, 7), (40, 900), (900, 40)]


def _photo(h, w, seed):
    """A smooth picture with texture and saturated spots (BGR uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(xx / (3 + c) + yy / (5 + 2 * c))
                     for c in range(3)], -1)
    img = base + rng.normal(0, 25, size=(h, w, 3))
    img[rng.random((h, w)) < 0.01] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def _blobs(h, w, seed):
    """0/1 uint8 mask of two ellipses and a box (sizes relative to h, w)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for _ in range(2):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.1, 0.3) * h + 1, rng.uniform(0.1, 0.3) * w + 1
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    m[h // 5:h // 5 + max(1, h // 4), w // 2:w // 2 + max(1, w // 5)] = True
    return m.astype(np.uint8)


def _affine(**kw):
    cfg = dict(type='Letterbox', scale=S, pad_val=DETRIS_BORDER_BGR,
               mode='affine')
    cfg.update(kw)
    return TRANSFORMS.build(cfg)


@pytest.mark.parametrize('h,w', SHAPES)
def test_affine_letterbox_is_detris_bit_exact(h, w):
    """Image: DETRIS warps the RGB photo; ours warps the BGR one with the
    border in BGR: the same uint8 values, channels flipped. Mask: DETRIS's
    soft float32 training mask, exactly."""
    seed = h * 1000 + w
    bgr, mask = _photo(h, w, seed), _blobs(h, w, seed)
    out = _affine(soft_masks=True)(
        dict(img=bgr.copy(), gt_seg_map=mask.copy(), seg_fields=['gt_seg_map']))

    mat, mat_inv = detris_letterbox_matrices(h, w, S, S)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    want_img = cv2.warpAffine(rgb, mat, (S, S), flags=cv2.INTER_CUBIC,
                              borderValue=DETRIS_BORDER_RGB)
    assert out['img'].dtype == np.uint8 and out['img'].shape == (S, S, 3)
    np.testing.assert_array_equal(out['img'], want_img[..., ::-1])

    mask255 = mask * 255  # DETRIS's PNG masks are 0 / 255
    warped = cv2.warpAffine(mask255.astype(np.uint8), mat, (S, S),
                            flags=cv2.INTER_LINEAR, borderValue=0.)
    want_mask = torch.from_numpy(warped / 255.).float().numpy()
    got = out['gt_seg_map']
    assert got.dtype == np.float32 and got.shape == (S, S)
    np.testing.assert_array_equal(got, want_mask)

    lb = out['letterbox']
    assert lb['mode'] == 'affine' and lb['ori_shape'] == (h, w)
    assert lb['out_shape'] == (S, S)
    assert lb['scale'] == min(S / h, S / w)
    np.testing.assert_array_equal(np.array(lb['matrix']), mat)
    np.testing.assert_array_equal(np.array(lb['inverse']), mat_inv)
    assert out['img_shape'] == out['pad_shape'] == (S, S)
    # plain Python floats: JSON and pickle keep them exactly
    assert json.loads(json.dumps(lb))['inverse'] == lb['inverse']
    assert pickle.loads(pickle.dumps(lb)) == lb


def test_affine_soft_mask_has_fractional_edges_and_binary_inside():
    h, w = 333, 500  # scale 0.896, offsets of half a pixel
    mask = _blobs(h, w, 0)
    out = _affine(soft_masks=True)(
        dict(img=_photo(h, w, 0), gt_seg_map=mask, seg_fields=['gt_seg_map']))
    soft = out['gt_seg_map']
    assert soft.min() == 0 and soft.max() == 1
    frac = (soft > 0) & (soft < 1)
    assert frac.any() and frac.mean() < 0.05  # only along the boundary


def test_affine_hard_masks_stay_binary_and_follow_the_image():
    """soft_masks=False: INTER_NEAREST, dtype and values kept, border =
    seg_pad_val; the mask lies where the soft mask is > 0.5 up to the
    boundary pixels."""
    h, w = 427, 640
    mask = _blobs(h, w, 3)
    res = dict(img=_photo(h, w, 3), gt_seg_map=mask, seg_fields=['gt_seg_map'])
    hard = _affine(seg_pad_val=255)(dict(res, img=res['img'].copy()))['gt_seg_map']
    soft = _affine(soft_masks=True)(dict(res))['gt_seg_map']
    assert hard.dtype == np.uint8 and set(np.unique(hard)) == {0, 1, 255}
    inside = (soft > 0) & (soft < 1)  # boundary pixels
    pad = hard == 255
    np.testing.assert_array_equal(hard[~inside & ~pad], (soft[~inside & ~pad] > 0.5))
    assert pad[:70].all() and pad[-70:].all()  # 74.55 rows of border each
    assert (soft[pad & ~inside] == 0).all()


def _near_an_edge(mask, radius):
    """Pixels whose (2 r + 1)^2 neighbourhood is not constant in ``mask``."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, k) != cv2.erode(m, k)


@pytest.mark.parametrize('h,w', [(333, 500), (500, 375), (640, 480), (300, 300),
                                 (40, 900), (7, 5), (150, 97)])
def test_affine_round_trip_recovers_the_mask_away_from_its_edges(h, w):
    """A hard mask (nearest) and a soft mask (cubic inverse, > 0.5) both come
    back equal to the original, except within the resampling radius of the
    mask's edges (about a pixel of the coarser of the two grids)."""
    mask = _blobs(h, w, h + w)
    res = dict(img=np.zeros((h, w, 3), np.uint8), gt_seg_map=mask,
               seg_fields=['gt_seg_map'])
    hard = _affine()(dict(res))
    soft = _affine(soft_masks=True)(dict(res))
    scale = hard['letterbox']['scale']
    radius = int(np.ceil(1 / scale)) + 1
    far = ~_near_an_edge(mask, radius)
    back = undo_letterbox(hard['gt_seg_map'], hard['letterbox'])
    assert back.dtype == np.uint8 and back.shape == (h, w)
    np.testing.assert_array_equal(back[far], mask[far])
    back_soft = undo_letterbox(soft['gt_seg_map'], soft['letterbox'])
    assert back_soft.dtype == np.float32 and back_soft.shape == (h, w)
    np.testing.assert_array_equal((back_soft > 0.5)[far], mask[far].astype(bool))
    # an upscaled mask comes back exactly but for one-pixel boundary slips
    if scale > 2:
        assert (back != mask).mean() < 0.02


def test_affine_undo_numpy_torch_dtypes_and_leading_axes():
    h, w = 50, 71
    out = _affine()(dict(img=np.zeros((h, w, 3), np.uint8)))
    lb = out['letterbox']
    inverse = np.array(lb['inverse'])
    rng = np.random.default_rng(0)
    prob = rng.random((2, 3, S, S)).astype(np.float32)
    want = np.stack([[cv2.warpAffine(p, inverse, (w, h), flags=cv2.INTER_CUBIC,
                                     borderValue=0.) for p in ps] for ps in prob])
    got = undo_letterbox(prob, lb)
    assert got.shape == (2, 3, h, w) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    got_t = undo_letterbox(torch.from_numpy(prob), lb)
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.float32
    np.testing.assert_array_equal(got_t.numpy(), want)
    half = undo_letterbox(torch.from_numpy(prob).half(), lb)
    assert half.dtype == torch.float16 and half.shape == (2, 3, h, w)
    f64 = undo_letterbox(prob[0, 0].astype(np.float64), lb)
    assert f64.dtype == np.float64 and f64.shape == (h, w)
    # warped in float32 (OpenCV's float64 cubic warp blanks the edges)
    np.testing.assert_array_equal(f64, want[0, 0])
    # integer and bool maps: nearest, values and dtype kept
    labels = rng.integers(0, 3, size=(1, S, S)).astype(np.int64) * 1000
    nearest = cv2.warpAffine(labels[0].astype(np.float32), inverse, (w, h),
                             flags=cv2.INTER_NEAREST, borderValue=0.)
    got_l = undo_letterbox(torch.from_numpy(labels), lb)
    assert got_l.dtype == torch.int64 and got_l.shape == (1, h, w)
    np.testing.assert_array_equal(got_l[0].numpy(), nearest.astype(np.int64))
    got_b = undo_letterbox(labels[0] > 0, lb)
    assert got_b.dtype == bool
    np.testing.assert_array_equal(got_b, nearest > 0)
    with pytest.raises(ValueError, match=r'\(448, 448\)'):
        undo_letterbox(prob[0, 0, :100], lb)


def test_resize_meta_has_a_mode_and_old_metas_still_work():
    _, mask, out = _run(37, 20, 448)
    lb = out['letterbox']
    assert lb['mode'] == 'resize'
    old = {k: v for k, v in lb.items() if k != 'mode'}  # pickled before modes
    np.testing.assert_array_equal(undo_letterbox(out['gt_seg_map'], old), mask)
    with pytest.raises(ValueError, match="mode 'bogus'"):
        undo_letterbox(out['gt_seg_map'], dict(lb, mode='bogus'))


@pytest.mark.parametrize('kwargs,match', [
    (dict(mode='detris'), 'mode'),
    (dict(soft_masks=True), "soft_masks=True needs mode='affine'"),
    (dict(mode='affine', soft_masks='yes'), 'soft_masks'),
    (dict(mode='affine', soft_masks=True, seg_pad_val=255), 'seg_pad_val'),
    (dict(scale=0), 'scale'),
    (dict(scale=(448, 448, 3)), 'scale'),
    (dict(scale=447.5), 'scale'),
    (dict(pad_val='grey'), 'pad_val'),
    (dict(seg_pad_val=None), 'seg_pad_val'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Letterbox(**kwargs)


def test_soft_masks_refuse_non_binary_masks_and_pad_val_length():
    t = _affine(soft_masks=True)
    bad = np.zeros((10, 12), np.uint8)
    bad[2:4, 2:4] = 255  # an ignore label cannot become a probability
    with pytest.raises(ValueError, match="'gt_seg_map' must hold only 0 and 1"):
        t(dict(img=np.zeros((10, 12, 3), np.uint8), gt_seg_map=bad,
               seg_fields=['gt_seg_map']))
    with pytest.raises(ValueError, match='pad_val has 3 values'):
        _affine()(dict(img=np.zeros((10, 12, 4), np.uint8)))
    with pytest.raises(ValueError, match="'gt_seg_map' has shape"):
        t(dict(img=np.zeros((10, 12, 3), np.uint8),
               gt_seg_map=np.zeros((12, 10), np.uint8), seg_fields=['gt_seg_map']))


def test_affine_grey_and_single_number_pad_val():
    img = np.full((20, 40), 200, np.uint8)
    out = _affine(pad_val=7)(dict(img=img))
    assert out['img'].shape == (S, S)
    assert out['img'][0, 0] == 7 and out['img'][S // 2, S // 2] == 200
    out3 = _affine(pad_val=7)(dict(img=np.dstack([img] * 3)))
    assert (out3['img'][0, 0] == 7).all()
    assert 'affine' in repr(_affine()) and 'soft_masks=False' in repr(_affine())
