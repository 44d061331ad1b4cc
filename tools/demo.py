"""Segment the object a sentence refers to and draw it on the image.

Examples::

    # one image: the mask as a coloured overlay with its outline, the
    # sentence as a caption, at the image's own size
    python tools/demo.py demo.jpg "the man on the left" CONFIG CKPT --out overlay.png
    # many: lines of image<TAB>sentence; one overlay per line and a contact sheet
    python tools/demo.py --batch pairs.tsv CONFIG CKPT --out overlays/ --device cuda

In a batch file (UTF-8, with or without a byte-order mark; UTF-16 with
one), blank lines and lines starting with '#' are skipped and relative image
paths are taken from the current directory. ``--out`` must end with an image
extension (:data:`IMAGE_EXTENSIONS`); with ``--batch`` it is a folder. Every
input is checked before the model is built; an error is one line on stderr
(``error: ...``, naming the file, line or key at fault) and exit status 1;
``--debug`` shows the traceback instead.

A sentence whose mask comes back empty (the model found nothing it names; a
model with a presence head, docs/en/method.md s. 9, decides so itself) is
captioned and reported ``"the purple star": not found (p = 0.93)``, p being
the head's probability that the sentence names nothing (no p without a head).

The caption is drawn with the default font and, for characters it lacks
(Chinese, emoji ...), installed fonts that have them
(:func:`sera_mm.visualization.caption_font`); characters that no installed
font has are drawn as '?' and named in a warning.
"""
import argparse
import os
import os.path as osp
import re
import sys
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

DEFAULT_SINGLE_OUT = 'overlay.png'
#: ``--out`` endings of the images the demo writes (those OpenCV can encode).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
DEFAULT_BATCH_OUT = 'demo_overlays'
CONTACT_SHEET = 'contact_sheet.png'
#: mmcv.imwrite's file backend: the images are written through
#: sera_mm.utils.atomic (registered as 'atomic_local' when sera_mm.utils is imported).
ATOMIC = dict(backend='atomic_local')


class InputError(ValueError):
    """A user input is wrong; the message names it."""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the mask a referring segmentation model predicts',
        usage='%(prog)s IMAGE SENTENCE CONFIG CHECKPOINT [--out FILE]\n'
              '       %(prog)s --batch FILE CONFIG CHECKPOINT [--out DIR]')
    parser.add_argument('inputs', nargs='*', metavar='ARG',
                        help='IMAGE SENTENCE CONFIG CHECKPOINT, or CONFIG CHECKPOINT '
                        'with --batch')
    parser.add_argument('--batch', metavar='FILE',
                        help='text file of lines image<TAB>sentence')
    parser.add_argument('--out', help=f'output image (default {DEFAULT_SINGLE_OUT}); '
                        f'with --batch a folder (default {DEFAULT_BATCH_OUT}/)')
    parser.add_argument('--device', default='cpu',
                        help="'cpu', 'cuda' or 'cuda:N' (default cpu)")
    parser.add_argument('--backend', choices=['pytorch', 'onnxruntime'], default='pytorch',
                        help='onnxruntime: CHECKPOINT is the file tools/deployment/'
                        'export_onnx.py exported from CONFIG (default pytorch)')
    parser.add_argument('--alpha', type=float, default=0.45,
                        help='opacity of the mask fill (default 0.45)')
    parser.add_argument('--no-caption', action='store_true',
                        help='do not write the sentence on the picture')
    parser.add_argument('--cell', type=int, default=256,
                        help='cell side of the contact sheet in pixels (default 256)')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        help='override settings of the config, key=value')
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks instead of one-line errors')
    # options may come between the positional arguments
    args = parser.parse_intermixed_args(argv)
    expected = 2 if args.batch else 4
    if len(args.inputs) != expected:
        names = 'CONFIG CHECKPOINT' if args.batch else 'IMAGE SENTENCE CONFIG CHECKPOINT'
        parser.error(f'expected {names}, got {len(args.inputs)} argument(s)')
    if not re.fullmatch(r'cpu|cuda(:\d+)?', args.device):
        parser.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f'--alpha must be in [0, 1], got {args.alpha}')
    return args


def writable_extensions() -> Tuple[str, ...]:
    """The :data:`IMAGE_EXTENSIONS` this OpenCV build can encode."""
    import cv2
    have = getattr(cv2, 'haveImageWriter', None)
    return tuple(e for e in IMAGE_EXTENSIONS if have is None or have(f'x{e}'))


def check_out(out: str, batch: bool) -> None:
    """Checks ``--out`` before the model is built.

    Raises:
        InputError: Naming ``--out``: without ``--batch`` it is a folder or
            does not end with an image extension (the message lists them);
            with ``--batch`` it is an existing file or ends like an image;
            its folder is a file or cannot be written into.
    """
    extensions = writable_extensions()
    ext = osp.splitext(out)[1].lower()
    if batch:
        if osp.exists(out) and not osp.isdir(out):
            raise InputError(f'--out {out} is an existing file; with --batch, --out names '
                             'a folder (one overlay per line and the contact sheet)')
        if ext in extensions and not osp.isdir(out):
            raise InputError(f'--out {out} ends like an image; with --batch, --out names '
                             'a folder (one overlay per line and the contact sheet)')
    else:
        if osp.isdir(out):
            raise InputError(f'--out {out} is a folder; without --batch, --out names the '
                             f'image to write ({", ".join(extensions)})')
        if ext not in extensions:
            found = f'extension {ext!r}' if ext else 'no extension'
            raise InputError(f'--out {out} has {found}; it must end with an image '
                             f'extension: {", ".join(extensions)}')
    folder = out if batch and osp.isdir(out) else osp.dirname(osp.abspath(out))
    if osp.exists(folder) and not osp.isdir(folder):
        raise InputError(f'--out {out}: {folder} is a file, not a folder')
    if osp.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f'--out {out}: the folder {folder} is not writable')


def _batch_lines(path: str) -> List[str]:
    """The lines of a batch file, decoded: UTF-8 (a byte-order mark is
    dropped), or UTF-16 with a byte-order mark.

    Raises:
        InputError: The file is not text in those encodings, naming the
            file, the line and the byte at fault.
    """
    with open(path, 'rb') as f:
        data = f.read()
    if data[:2] in (b'\xff\xfe', b'\xfe\xff'):
        try:
            return data.decode('utf-16').split('\n')
        except UnicodeDecodeError as e:
            raise InputError(f'{path}: not valid UTF-16 text (starts with a UTF-16 '
                             f'byte-order mark; byte {e.start}); save it as UTF-8') from None
    if data.startswith(b'\xef\xbb\xbf'):
        data = data[3:]
    lines = []
    for number, raw in enumerate(data.split(b'\n'), start=1):
        if b'\x00' in raw:
            raise InputError(f'{path}:{number}: holds NUL bytes (UTF-16 without a '
                             'byte-order mark?); save the file as UTF-8')
        try:
            lines.append(raw.decode('utf-8'))
        except UnicodeDecodeError as e:
            raise InputError(
                f'{path}:{number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column '
                f'{e.start + 1}); save the batch file as UTF-8') from None
    return lines


def read_batch_file(path: str) -> List[Tuple[str, str, str]]:
    """Reads and checks a batch file.

    Returns:
        list of (image path, sentence, 'FILE:LINE') in file order.

    Raises:
        InputError: The file is missing, empty or not UTF-8 (or UTF-16 with
            a byte-order mark) text, a line has no tab, an image is missing or
            a sentence is empty (naming FILE:LINE).
    """
    if not osp.isfile(path):
        raise InputError(f'batch file not found: {path}')
    pairs = []
    for number, raw in enumerate(_batch_lines(path), start=1):
        line = raw.rstrip('\r\n')
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        where = f'{path}:{number}'
        if '\t' not in line:
            raise InputError(f'{where}: expected image<TAB>sentence, found no tab')
        image, sentence = line.split('\t', 1)
        image, sentence = image.strip(), sentence.strip()
        check_pair(image, sentence, where)
        pairs.append((image, sentence, where))
    if not pairs:
        raise InputError(f'batch file {path} holds no image<TAB>sentence line')
    return pairs


def check_pair(image: str, sentence: str, where: str = '') -> None:
    """Raises InputError if the image file is missing or the sentence empty."""
    prefix = f'{where}: ' if where else ''
    if not image:
        raise InputError(f'{prefix}empty image path')
    if not osp.isfile(image):
        raise InputError(f'{prefix}image not found: {image}')
    if not sentence.strip():
        raise InputError(f'{prefix}empty sentence for image {image}')


def no_target_score(result) -> Optional[float]:
    """The probability that the sentence names nothing, from the model's
    presence head (``no_target_score``); None for a model without one."""
    score = result.get('no_target_score')
    return None if score is None else float(score)


def not_found(sentence: str, score: Optional[float]) -> str:
    """What the demo writes for a sentence whose mask is empty: the model
    found nothing it names (with the presence head's probability)."""
    return f'"{sentence}": not found' + ('' if score is None else f' (p = {score:.2f})')


class Drawing(NamedTuple):
    """One pair drawn by :func:`draw`."""
    image: np.ndarray  #: H x W x 3 RGB overlay, the image's size
    share: float  #: mask area / image area
    score: Optional[float]  #: :func:`no_target_score`
    caption: str  #: what the picture's caption says (or would, with --no-caption)

    def summary(self) -> str:
        """The printed note: the mask's share, or that nothing was found."""
        if not self.share:
            return self.caption
        p = '' if self.score is None else f', no-target p = {self.score:.2f}'
        return f'mask {100 * self.share:.1f}% of the image{p}'


def draw(model, visualizer, image_path: str, sentence: str, caption: bool) -> Drawing:
    """Runs the model on one pair and draws it; an empty mask (the model
    found no target) is captioned :func:`not_found` instead of the bare
    sentence."""
    import mmcv

    from sera_mm.apis import inference_referring, load_image
    image = load_image(image_path)
    result = inference_referring(model, image, sentence)
    mask = result.pred_sem_seg.data[0].cpu().numpy().astype(bool)
    score = no_target_score(result)
    text = sentence if mask.any() else not_found(sentence, score)
    drawn = visualizer.draw_referring(mmcv.bgr2rgb(image), mask, text if caption else None)
    assert drawn.shape[:2] == image.shape[:2]
    return Drawing(drawn, float(mask.mean()), score, text)


def run(args: argparse.Namespace) -> int:
    """Checks the inputs, builds the model, writes the pictures."""
    if args.batch:
        pairs = read_batch_file(args.batch)
        config, checkpoint = args.inputs
    else:
        image, sentence, config, checkpoint = args.inputs
        check_pair(image, sentence)
        pairs = [(image, sentence.strip(), image)]
    for name, path in (('config', config), ('checkpoint', checkpoint)):
        if not osp.isfile(path):
            raise InputError(f'{name} not found: {path}')
    out = args.out or (DEFAULT_BATCH_OUT if args.batch else DEFAULT_SINGLE_OUT)
    check_out(out, bool(args.batch))

    import mmcv
    from mmengine.config import DictAction

    from sera_mm.apis import init_model
    from sera_mm.visualization import ReferringVisualizer, make_contact_sheet

    cfg_options = None
    if args.cfg_options:
        namespace = argparse.Namespace()
        DictAction(option_strings=[], dest='cfg')(None, namespace, args.cfg_options)
        cfg_options = namespace.cfg
    model = init_model(config, checkpoint, device=args.device, cfg_options=cfg_options,
                       backend=args.backend)
    visualizer = ReferringVisualizer(name='sera_demo', alpha=args.alpha)

    if not args.batch:
        drawing = draw(model, visualizer, pairs[0][0], pairs[0][1], not args.no_caption)
        h, w = drawing.image.shape[:2]
        mmcv.imwrite(mmcv.rgb2bgr(drawing.image), out, backend_args=ATOMIC)
        print(f'{out}: {w} x {h}, {drawing.summary()}')
        return 0

    out_dir = out
    os.makedirs(out_dir, exist_ok=True)
    overlays = []
    for i, (image, sentence, where) in enumerate(pairs):
        try:
            drawing = draw(model, visualizer, image, sentence, not args.no_caption)
        except Exception as e:
            raise type(e)(f'{where}: {e}') from e
        stem = osp.splitext(osp.basename(image))[0]
        path = osp.join(out_dir, f'{i:03d}_{stem}.png')
        mmcv.imwrite(mmcv.rgb2bgr(drawing.image), path, backend_args=ATOMIC)
        overlays.append(drawing.image)
        note = drawing.summary()
        print(f'{path}: {note}' + ('' if note == drawing.caption else f' ({sentence!r})'))
    sheet = osp.join(out_dir, CONTACT_SHEET)
    mmcv.imwrite(mmcv.rgb2bgr(make_contact_sheet(overlays, cell=args.cell)), sheet,
                 backend_args=ATOMIC)
    print(f'{sheet}: {len(overlays)} overlays')
    return 0


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    # KeyError quotes its message
    return text[1:-1] if isinstance(error, KeyError) and text[:1] == text[-1:] == "'" else text


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.debug:
        return run(args)
    try:
        return run(args)
    except Exception as e:  # one line per error, not a traceback wall
        print(f'error: {_one_line(e)}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
