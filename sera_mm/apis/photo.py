"""Users' photos, read the way a photo viewer shows them.

A photo from a phone or a camera is often stored sideways with an EXIF
orientation tag, may be grayscale, 16-bit, a palette PNG or transparent,
and is often far larger than the model's input. :func:`read_photo` returns
the picture a viewer shows; :func:`shrink_for_model` makes the copy the
model reads. The pixels of an upright, opaque JPEG or PNG are exactly those
of OpenCV's ``IMREAD_COLOR`` (mmcv's ``LoadImageFromFile``, the training
and test loader): Pillow and OpenCV share libjpeg and libpng, and 16-bit
samples keep their high byte as OpenCV does.
"""
import warnings
from typing import Optional, Tuple

import cv2
import numpy as np

#: Photos whose longer side exceeds this many pixels are shrunk (area
#: averaging) before the letterbox, whose one-step warp of a 4000 px photo
#: to 448 px would alias. RefCOCO's images (at most 640 px) are untouched.
PHOTO_MAX_SIDE = 1024

#: The background transparent pixels are flattened over: white, the page
#: behind the picture in a viewer or the web demo.
ALPHA_BACKGROUND = 255

_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N')


def flatten_alpha(color: np.ndarray, alpha: np.ndarray,
                  background: int = ALPHA_BACKGROUND) -> np.ndarray:
    """``color`` (H x W x 3 uint8) composited over a plain ``background`` by
    ``alpha`` (H x W uint8, 255 = opaque); an opaque alpha changes nothing."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = color.astype(np.float32) * a + float(background) * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pil_to_rgb(im) -> np.ndarray:
    """Any Pillow mode as H x W x 3 uint8 RGB, as a viewer shows it."""
    mode = im.mode
    if mode in _SIXTEEN_BIT or mode == 'I':
        # 16-bit grayscale: the high byte, as OpenCV's IMREAD_COLOR
        gray = (np.clip(np.asarray(im, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == 'F':
        im = im.convert('L')
    has_alpha = mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in im.info
    if has_alpha:
        rgba = np.asarray(im.convert('RGBA'))
        return flatten_alpha(rgba[..., :3], rgba[..., 3])
    return np.asarray(im.convert('RGB'))


def read_photo(path: str) -> np.ndarray:
    """Reads an image file as a photo viewer shows it, H x W x 3 uint8 BGR.

    * the EXIF orientation (tag 274, values 2-8) is applied, in every format
      that carries EXIF (JPEG, PNG, WebP, TIFF, HEIF where Pillow reads it);
      a damaged EXIF block leaves the picture as stored, with a warning;
    * grayscale, 1-bit, palette, CMYK and 16-bit images become 8-bit colour;
    * transparency (RGBA, LA, a palette or a PNG ``tRNS`` colour) is
      flattened over white (:data:`ALPHA_BACKGROUND`);
    * animated or multi-page files give their first frame.

    Pillow reads the file; a format it does not know falls back to OpenCV.
    Pillow's decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``) holds.

    Raises:
        ValueError: The file is not an image either library can decode, or
            it is too large; the message names the path and the reason.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            try:
                im.load()
            except Image.DecompressionBombError:
                raise
            except Exception as e:  # truncated, corrupt: Pillow raises several types
                raise ValueError(f'cannot decode image: {path} ({_reason(e)})') from e
            if im.getexif().get(_EXIF_ORIENTATION, 1) not in (1, None):
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception as e:  # a damaged EXIF block: show it as stored
                    warnings.warn(f'{path}: EXIF orientation not applied ({_reason(e)})')
            rgb = _pil_to_rgb(im)
    except Image.DecompressionBombError as e:
        raise ValueError(f'image too large: {path} ({_reason(e)})') from e
    except UnidentifiedImageError:
        img = cv2.imread(path, cv2.IMREAD_COLOR)  # formats Pillow does not know
        if img is None:
            raise ValueError(f'cannot decode image: {path} (not an image file, or a '
                             'format neither Pillow nor OpenCV reads)') from None
        return img
    return np.ascontiguousarray(rgb[..., ::-1])


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def shrink_for_model(image: np.ndarray,
                     max_side: Optional[int] = PHOTO_MAX_SIDE) -> Tuple[np.ndarray, bool]:
    """The copy of ``image`` the model reads: shrunk with area averaging so
    that its longer side is ``max_side`` (aspect ratio kept, each side
    rounded, at least 1 px), or ``image`` itself when it is not larger or
    ``max_side`` is None.

    Returns:
        tuple: The image the model reads, and whether it was shrunk.
    """
    if max_side is None:
        return image, False
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f'max_side must be a positive int or None, got {max_side!r}')
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, False
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # (w, h) for OpenCV
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), True
