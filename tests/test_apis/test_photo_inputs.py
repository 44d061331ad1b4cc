"""Users' photos through sera_mm.apis (and so tools/demo.py and tools/webui.py):
shown as a photo viewer shows them, the mask at that displayed size.

Every image is made here with Pillow: an EXIF-rotated JPEG (orientation 6)
and PNG, grayscale (8 and 16 bit), RGBA and palette PNGs with transparency,
a photo larger than the model reads, broken files."""
import importlib.util
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sera_mm.apis import (PHOTO_MAX_SIDE, default_threshold, inference_referring, init_model,
                          load_image, read_photo, shrink_for_model)
from helpers.paths import REPO

ORIENTATION = 0x0112  # EXIF tag 274
#: EXIF orientation -> what a viewer does to the stored pixels (numpy, H x W x C)
VIEWER = {
    1: lambda a: a,
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, -1),  # stored sideways: turn 90 degrees clockwise
    8: lambda a: np.rot90(a, 1),
}


@pytest.fixture(scope='module')
def model(tiny_model_files):
    config, checkpoint, _ = tiny_model_files
    return init_model(config, checkpoint, device='cpu')


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with a marked top-left corner (so that a wrong
    rotation or flip cannot pass)."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8),
                     (w, h), interpolation=cv2.INTER_LINEAR)
    img[:max(1, h // 5), :max(1, w // 5)] = (255, 0, 0)
    return img


def _save(rgb: np.ndarray, path, orientation: int = 1, **kwargs) -> str:
    im = Image.fromarray(rgb)
    if orientation != 1:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        kwargs['exif'] = exif.tobytes()
    im.save(str(path), **kwargs)
    return str(path)


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


# -- EXIF orientation --------------------------------------------------------
def test_exif_rotated_jpeg_is_read_upright_and_masked_at_its_displayed_size(model, tmp_path):
    """A phone photo stored sideways (80 x 120 pixels, EXIF orientation 6):
    read as the 120 x 80 picture a viewer shows; the mask has that size and
    is the prediction of that upright picture."""
    stored = _scene(80, 120)
    path = _save(stored, tmp_path / 'phone.jpg', orientation=6, quality=95)
    as_stored = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert as_stored.shape == (80, 120, 3)  # the file really is stored sideways

    img = load_image(path)
    assert img.shape == (120, 80, 3)
    np.testing.assert_array_equal(img, VIEWER[6](as_stored))
    # the marked corner (top left when stored) is now at the top right
    assert img[2, -3, 0] < 60 and img[2, -3, 2] > 200  # BGR: red

    got = inference_referring(model, path, 'the red square')
    assert tuple(got.pred_sem_seg.shape) == (120, 80)
    assert tuple(got.metainfo['ori_shape']) == (120, 80)
    want = inference_referring(model, np.ascontiguousarray(VIEWER[6](as_stored)),
                               'the red square')
    torch.testing.assert_close(got.seg_logits.data, want.seg_logits.data)


@pytest.mark.parametrize('orientation', [3, 6, 8])
def test_exif_orientation_of_a_png_is_applied_exactly(tmp_path, orientation):
    stored = _scene(30, 50, seed=orientation)
    path = _save(stored, tmp_path / f'o{orientation}.png', orientation=orientation)
    np.testing.assert_array_equal(load_image(path), _bgr(VIEWER[orientation](stored)))


def test_upright_photos_read_as_the_training_loader_reads_them(tmp_path):
    """No orientation, no alpha: the pixels of OpenCV's IMREAD_COLOR, the
    training and test loader (mmcv's LoadImageFromFile)."""
    rgb = _scene(57, 91, seed=3)
    for name, kwargs in (('plain.jpg', dict(quality=90)), ('prog.jpg', dict(progressive=True)),
                         ('plain.png', {})):
        path = _save(rgb, tmp_path / name, **kwargs)
        np.testing.assert_array_equal(load_image(path), cv2.imread(path, cv2.IMREAD_COLOR))


def test_demo_tool_draws_the_photo_upright(tiny_model_files, tmp_path):
    """tools/demo.py reads through the API, so it shows the photo upright."""
    spec = importlib.util.spec_from_file_location('sera_demo_tool_exif',
                                                  osp.join(REPO, 'tools', 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    config, checkpoint, _ = tiny_model_files
    path = _save(_scene(64, 100), tmp_path / 'phone.jpg', orientation=6)
    out = str(tmp_path / 'overlay.png')
    assert demo.main([path, 'the red square', config, checkpoint, '--out', out]) == 0
    assert cv2.imread(out).shape == (100, 64, 3)


# -- grayscale, 16 bit, transparency ----------------------------------------
def test_grayscale_png_becomes_three_equal_channels(model, tmp_path):
    gray = _scene(45, 77)[..., 1]
    path = str(tmp_path / 'gray.png')
    Image.fromarray(gray, mode='L').save(path)
    img = load_image(path)
    assert img.shape == (45, 77, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], gray)
    assert tuple(inference_referring(model, path, 'the circle').pred_sem_seg.shape) == (45, 77)


def test_16_bit_grayscale_png_keeps_the_high_byte(tmp_path):
    gray16 = (np.arange(40 * 64, dtype=np.uint32).reshape(40, 64) * 25).astype(np.uint16)
    path = str(tmp_path / 'gray16.png')
    Image.fromarray(gray16).save(path)
    assert Image.open(path).mode == 'I;16'
    img = load_image(path)
    np.testing.assert_array_equal(img[..., 0], (gray16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(img, cv2.imread(path, cv2.IMREAD_COLOR))  # as OpenCV


def test_rgba_png_is_flattened_over_white(model, tmp_path):
    """Transparent pixels show the page behind them (white), not the colour
    stored under alpha 0; opaque pixels keep theirs; half transparent ones
    are mixed. A BGRA array is read the same way."""
    rgb = _scene(33, 64, seed=5)
    rgb[:, :16] = (0, 0, 0)
    alpha = np.full((33, 64), 255, np.uint8)
    alpha[:, :16] = 0  # transparent, black underneath
    alpha[:, 16:32] = 128
    path = str(tmp_path / 'rgba.png')
    Image.fromarray(np.dstack([rgb, alpha]), mode='RGBA').save(path)
    img = load_image(path)
    assert img.shape == (33, 64, 3)
    assert (img[:, :16] == 255).all()
    np.testing.assert_array_equal(img[:, 32:], _bgr(rgb[:, 32:]))
    mixed = np.rint(rgb[:, 16:32].astype(np.float32) * (128 / 255) + 255 * (127 / 255))
    np.testing.assert_array_equal(img[:, 16:32], _bgr(mixed.astype(np.uint8)))
    bgra = np.dstack([_bgr(rgb), alpha])
    np.testing.assert_array_equal(load_image(bgra), img)
    got = inference_referring(model, path, 'the green square')
    assert tuple(got.pred_sem_seg.shape) == (33, 64)


def test_palette_png_with_a_transparent_index(tmp_path):
    pal = np.zeros((20, 30), np.uint8)
    pal[:, 15:] = 1
    im = Image.fromarray(pal, mode='P')
    im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    path = str(tmp_path / 'palette.png')
    im.save(path, transparency=0)
    img = load_image(path)
    assert (img[:, :15] == 255).all()  # index 0: transparent
    assert (img[:, 15:] == (30, 30, 200)).all()  # BGR of palette entry 1


# -- large photos --------------------------------------------------------------
def test_large_photo_is_shrunk_for_the_model_and_masked_at_full_size(model, tmp_path):
    """A 2400 x 1600 photo: the model reads it shrunk to PHOTO_MAX_SIDE
    (area averaging), the mask comes back at 2400 x 1600: the shrunk
    image's probabilities resized (bilinear), then thresholded."""
    h, w = 1600, 2400
    path = _save(_scene(h, w, seed=7), tmp_path / 'large.jpg', quality=92)
    got = inference_referring(model, path, 'the red square')
    assert tuple(got.pred_sem_seg.shape) == (h, w)
    assert tuple(got.seg_logits.shape) == (h, w)
    assert tuple(got.metainfo['ori_shape']) == (h, w)
    small_h, small_w = round(h * PHOTO_MAX_SIDE / w), PHOTO_MAX_SIDE
    assert tuple(got.metainfo['model_shape']) == (small_h, small_w)

    small, shrunk = shrink_for_model(read_photo(path))
    assert shrunk and small.shape == (small_h, small_w, 3)
    ref = inference_referring(model, small, 'the red square')
    prob = F.interpolate(ref.seg_logits.data.sigmoid()[None], (h, w), mode='bilinear',
                         align_corners=False)[0]
    torch.testing.assert_close(got.seg_logits.data.sigmoid(), prob, atol=1e-5, rtol=0)
    thr = default_threshold(model)
    mismatch = (got.pred_sem_seg.data.bool() != (prob > thr)).float().mean()
    assert mismatch < 1e-4  # only pixels whose probability sits on the threshold


def test_large_rotated_photo_is_masked_at_its_displayed_size(model, tmp_path):
    path = _save(_scene(1200, 1800, seed=8), tmp_path / 'large_phone.jpg', orientation=6)
    got = inference_referring(model, path, 'the red square')
    assert tuple(got.pred_sem_seg.shape) == (1800, 1200)
    short_side = round(1200 * PHOTO_MAX_SIDE / 1800)
    assert tuple(got.metainfo['model_shape']) == (PHOTO_MAX_SIDE, short_side)


def test_images_up_to_max_side_take_the_unchanged_path(model):
    img = _bgr(_scene(100, PHOTO_MAX_SIDE))
    assert shrink_for_model(img)[0] is img
    got = inference_referring(model, img, 'the red square')
    assert 'model_shape' not in got.metainfo
    full = inference_referring(model, _bgr(_scene(300, 1500)), 'the red square', max_side=None)
    assert tuple(full.pred_sem_seg.shape) == (300, 1500) and 'model_shape' not in full.metainfo
    with pytest.raises(ValueError, match='max_side must be a positive int'):
        inference_referring(model, img, 'the red square', max_side=0)


# -- threshold and broken files ----------------------------------------------
def test_threshold_option(model):
    img = _bgr(_scene(40, 60))
    base = inference_referring(model, img, 'the red square')
    same = inference_referring(model, img, 'the red square', threshold=default_threshold(model))
    assert torch.equal(base.pred_sem_seg.data, same.pred_sem_seg.data)
    assert inference_referring(model, img, 'x', threshold=0.0).pred_sem_seg.data.all()
    assert not inference_referring(model, img, 'x', threshold=1.0).pred_sem_seg.data.any()
    for bad in (-0.1, 1.5, 'high', True):
        with pytest.raises(ValueError, match='threshold must be a number in'):
            inference_referring(model, img, 'x', threshold=bad)


def test_broken_files_name_the_path(tmp_path):
    text = tmp_path / 'notes.jpg'
    text.write_bytes(b'not an image at all')
    with pytest.raises(ValueError, match=r'cannot decode image: .*notes\.jpg'):
        load_image(str(text))
    whole = _save(_scene(200, 300), tmp_path / 'whole.jpg')
    cut = tmp_path / 'cut.jpg'
    cut.write_bytes(open(whole, 'rb').read()[:1500])
    with pytest.raises(ValueError, match=r'cannot decode image: .*cut\.jpg \(image file is '
                       'truncated'):
        load_image(str(cut))
