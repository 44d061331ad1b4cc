"""Letterbox geometry: the resampling helpers, the affine matrices and
:func:`undo_letterbox`, the inverse map the segmentor applies to its
predictions. The two modes are described by the transform that uses them,
:class:`~sera_mm.datasets.transforms.Letterbox`.
"""
import numbers
from typing import Dict, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[np.ndarray, torch.Tensor]

LETTERBOX_MODES = ('resize', 'affine')

# dtypes OpenCV's warpAffine takes as they are (nearest and cubic).
_CV_WARP_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def nearest_exact_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` output pixels, pixel-centre nearest.

    ``floor((i + 0.5) * src / dst)``, torch's 'nearest-exact'. mmcv's
    'nearest' is OpenCV's INTER_NEAREST, ``floor(i * src / dst)``, which
    shifts a mask by up to a pixel against the bilinear image and does not
    undo an upscaling exactly; the pixel-centre rule does both right.
    """
    idx = np.floor((np.arange(dst) + 0.5) * (src / dst)).astype(np.int64)
    return np.minimum(idx, src - 1)


def resize_nearest(x: ArrayLike, size: Tuple[int, int]) -> ArrayLike:
    """Resizes the last two axes of ``x`` to ``size`` (h, w), any dtype."""
    h, w = x.shape[-2:]
    rows = nearest_exact_indices(h, size[0])
    cols = nearest_exact_indices(w, size[1])
    if isinstance(x, torch.Tensor):
        rows_t = torch.as_tensor(rows, device=x.device)
        cols_t = torch.as_tensor(cols, device=x.device)
        return x.index_select(-2, rows_t).index_select(-1, cols_t)
    return x[..., rows[:, None], cols[None, :]]


def resize_bilinear(x: ArrayLike, size: Tuple[int, int]) -> ArrayLike:
    """Bilinear (half-pixel centres) resize of the last two axes."""
    if isinstance(x, torch.Tensor):
        lead = x.shape[:-2]
        y = F.interpolate(x.reshape(1, -1, *x.shape[-2:]), size=size,
                          mode='bilinear', align_corners=False)
        return y.reshape(*lead, *size)
    lead = x.shape[:-2]
    # OpenCV has no float16 resize: work in float32, return x's dtype.
    flat = x.reshape(-1, *x.shape[-2:]).astype(np.float32)
    out = np.stack([mmcv.imresize(m, (size[1], size[0]),
                                  interpolation='bilinear') for m in flat])
    return out.reshape(*lead, *size).astype(x.dtype)


def affine_letterbox_matrices(
        ori_shape: Tuple[int, int],
        out_shape: Tuple[int, int]) -> Tuple[float, np.ndarray, np.ndarray]:
    """Scale, forward and inverse 2 x 3 matrices of the affine letterbox.

    The scale is ``min(out_h / h, out_w / w)``; the scaled image (not
    rounded) is centred, so its offsets may be half pixels. Both matrices
    come from ``cv2.getAffineTransform`` on float32 corners, as DETRIS's data
    pipeline computes them: a closed-form inverse differs in the last bits,
    which can flip the rounding of a warped uint8 pixel.

    Args:
        ori_shape: (h, w) of the original image.
        out_shape: (h, w) of the letterboxed output.

    Returns:
        tuple: ``(scale, matrix, inverse)``, 2 x 3 float64; ``matrix`` maps
        original to output pixel coordinates.
    """
    h, w = ori_shape
    out_h, out_w = out_shape
    scale = min(out_h / h, out_w / w)
    new_h, new_w = h * scale, w * scale
    off_x, off_y = (out_w - new_w) / 2., (out_h - new_h) / 2.
    corners = np.array([[0, 0], [w, 0], [0, h]], np.float32)
    placed = np.array([[off_x, off_y], [off_x + new_w, off_y],
                       [off_x, off_y + new_h]], np.float32)
    return (scale, cv2.getAffineTransform(corners, placed),
            cv2.getAffineTransform(placed, corners))


def _border(value: Union[float, Sequence[float]], channels: int) -> Tuple:
    """OpenCV border scalar: one number for every channel or one each."""
    if isinstance(value, numbers.Number):
        return (float(value), ) * 4
    value = tuple(float(v) for v in value)
    if len(value) != channels:
        raise ValueError(f'Letterbox: pad_val has {len(value)} values for an '
                         f'image with {channels} channels')
    return value + (0., ) * (4 - len(value)) if len(value) < 4 else value


def warp_hw(x: np.ndarray, matrix: np.ndarray, dsize: Tuple[int, int],
            flags: int, border: Union[float, Sequence[float]]) -> np.ndarray:
    """``cv2.warpAffine`` of an H x W or H x W x C array, shape kept.

    ``dsize`` is (w, h). More than 4 channels are warped one at a time
    (OpenCV's border scalar has 4 entries); each channel is warped the same
    either way.
    """
    x = np.ascontiguousarray(x)
    channels = 1 if x.ndim == 2 else x.shape[2]
    border = _border(border, channels)
    if x.ndim == 3 and channels > 4:
        return np.stack([
            cv2.warpAffine(x[..., c], matrix, dsize, flags=flags,
                           borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(border[c], ) * 4)
            for c in range(channels)], axis=-1)
    out = cv2.warpAffine(x, matrix, dsize, flags=flags,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    if x.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel
        out = out[..., None]
    return out


def warp_nearest(x: np.ndarray, matrix: np.ndarray, dsize: Tuple[int, int],
                 border: float) -> np.ndarray:
    """Nearest-neighbour warp of an H x W (x C) array of any dtype.

    Values are copied, never blended. OpenCV takes uint8, uint16, int16,
    float32 and float64; bool and other integers go through the smallest of
    those that holds all their values (and ``border``), or, failing that,
    through an index into their distinct values.
    """
    if x.dtype in _CV_WARP_DTYPES:
        return warp_hw(x, matrix, dsize, cv2.INTER_NEAREST, border)
    if x.dtype == np.bool_:
        out = warp_hw(x.view(np.uint8), matrix, dsize, cv2.INTER_NEAREST,
                      float(bool(border)))
        return out.astype(bool)
    if not np.issubdtype(x.dtype, np.integer):
        work = x.astype(np.float64)
        return warp_hw(work, matrix, dsize, cv2.INTER_NEAREST,
                       border).astype(x.dtype)
    lo = min(int(x.min()), int(border)) if x.size else int(border)
    hi = max(int(x.max()), int(border)) if x.size else int(border)
    for work_dtype in (np.uint8, np.uint16, np.int16):
        info = np.iinfo(work_dtype)
        if info.min <= lo and hi <= info.max:
            out = warp_hw(x.astype(work_dtype), matrix, dsize,
                          cv2.INTER_NEAREST, border)
            return out.astype(x.dtype)
    values, index = np.unique(np.append(x.ravel(), np.array(border, x.dtype)),
                              return_inverse=True)
    if len(values) > np.iinfo(np.uint16).max + 1:
        raise ValueError(f'nearest warp: {len(values)} distinct values in a '
                         f'{x.dtype} map, at most 65536 are supported')
    index = index.astype(np.uint16)
    out = warp_hw(index[:-1].reshape(x.shape), matrix, dsize,
                  cv2.INTER_NEAREST, float(index[-1]))
    return values[out]


def _undo_affine(x: ArrayLike, letterbox: Dict) -> ArrayLike:
    """Inverse warp of ... x H x W maps for an ``'affine'`` letterbox."""
    out_h, out_w = (int(v) for v in letterbox['out_shape'])
    h0, w0 = (int(v) for v in letterbox['ori_shape'][:2])
    if tuple(x.shape[-2:]) != (out_h, out_w):
        raise ValueError(f'undo_letterbox expects spatial size {(out_h, out_w)} '
                         f'(the letterboxed input), got {tuple(x.shape[-2:])}')
    inverse = np.asarray(letterbox['inverse'], np.float64)
    if isinstance(x, torch.Tensor):
        arr = x.detach().cpu()
        if arr.dtype in (torch.float16, torch.bfloat16):
            arr = arr.float()
        out = _undo_affine(arr.numpy(), letterbox)
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)
    lead = x.shape[:-2]
    flat = x.reshape(-1, out_h, out_w)
    if np.issubdtype(x.dtype, np.floating):
        # Always float32, DETRIS's dtype: OpenCV's float64 cubic warp sets
        # every pixel whose 4 x 4 window leaves the map to the border value.
        work = flat.astype(np.float32, copy=False)
        maps = [warp_hw(m, inverse, (w0, h0), cv2.INTER_CUBIC, 0.)
                for m in work]
    else:
        maps = [warp_nearest(m, inverse, (w0, h0), 0) for m in flat]
    out = np.stack(maps) if maps else np.zeros((0, h0, w0), x.dtype)
    return out.reshape(*lead, h0, w0).astype(x.dtype, copy=False)


def _undo_resize(x: ArrayLike, letterbox: Dict) -> ArrayLike:
    """Crop and resize of ... x H x W maps for a ``'resize'`` letterbox."""
    left, top, right, bottom = letterbox['pad']
    nh, nw = letterbox['resized_shape']
    ori = tuple(int(v) for v in letterbox['ori_shape'][:2])
    expected = (nh + top + bottom, nw + left + right)
    if tuple(x.shape[-2:]) != expected:
        raise ValueError(f'undo_letterbox expects spatial size {expected} '
                         f'(the letterboxed input), got {tuple(x.shape[-2:])}')
    crop = x[..., top:top + nh, left:left + nw]
    floating = crop.is_floating_point() if isinstance(crop, torch.Tensor) \
        else np.issubdtype(crop.dtype, np.floating)
    if floating:
        return resize_bilinear(crop, ori)
    return resize_nearest(crop, ori)


def undo_letterbox(x: ArrayLike, letterbox: Dict) -> ArrayLike:
    """Maps a map on the letterboxed input back to the original image.

    Called by the segmentor on the predicted probabilities. The letterbox's
    ``mode`` (``'resize'`` when absent, as in metas pickled before modes
    existed) decides the map:

    * ``'resize'``: crops the padding, then resizes to ``ori_shape``:
      bilinear for floating point input, pixel-centre nearest for integer
      and bool input (masks).
    * ``'affine'``: ``cv2.warpAffine`` with the stored ``inverse``, border 0:
      bicubic in float32 for floating point input (DETRIS's
      post-processing), nearest for integer and bool input. Tensors go
      through NumPy on the CPU (no gradient) and come back on their device.

    Args:
        x: H x W or ... x H x W array or tensor at the letterboxed size.
        letterbox: the ``letterbox`` metainfo set by :class:`Letterbox`.

    Returns:
        Same type, dtype, device and leading axes as ``x``, at ``ori_shape``.

    Raises:
        ValueError: ``x`` is not at the letterboxed size, or the mode is
            unknown.
    """
    mode = letterbox.get('mode', 'resize')
    if mode == 'resize':
        return _undo_resize(x, letterbox)
    if mode == 'affine':
        return _undo_affine(x, letterbox)
    raise ValueError(f"undo_letterbox: unknown letterbox mode '{mode}', "
                     f'expected one of {LETTERBOX_MODES}')
