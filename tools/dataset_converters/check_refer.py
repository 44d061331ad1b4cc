"""Checks a RefCOCO / RefCOCO+ / RefCOCOg download before training on it.

The REFER files are read by the loader's own code
(:class:`sera_mm.datasets.RefCOCODataset`: ``load_instances``,
``load_refer_pickle``, ``parse_ref`` for every ref, so every bad ref is
listed, not only the first), the images as the training pipeline reads them
(``mmcv.imfrombytes``, EXIF orientation ignored), the masks with the
pipeline's decoder (``decode_segmentation``). Reported:

* per data set, refs file and split: refs, sentences and images found,
  beside the published counts where known (below);
* files that are missing or unreadable (a truncated ``refs(<by>).p`` or
  ``instances.json``), refs the loader refuses (with the ref and the reason);
* images that are missing, unreadable, cut short, or of another size than
  ``instances.json`` says (the mask would not fit: DETRIS #3 failed
  mid-validation on that);
* annotations whose masks do not decode.

The last line is ``ready`` when training and testing can read everything,
otherwise what to fix (the details are listed above it); the exit code is 0
or 1. Counts that differ from the published ones are reported as a note (a
partial or re-split set may be what you want); ``--strict-counts`` makes
them a problem.

Published counts (refs / sentences / images per split):

* RefCOCO and RefCOCO+, unc split: Yu et al., "Modeling Context in Referring
  Expressions", ECCV 2016, as released in lichengunc/refer (RefCOCO: 142,210
  sentences, 50,000 refs, 19,994 images; RefCOCO+: 141,564 / 49,856 /
  19,992).
* RefCOCOg, umd split: Nagaraja et al., "Modeling Context Between Objects for
  Referring Expression Understanding", ECCV 2016 (95,010 sentences, 49,822
  refs, 25,799 images; no image in two splits).
* RefCOCOg, google split: Mao et al., "Generation and Comprehension of
  Unambiguous Object Descriptions", CVPR 2016 (train and val released, the
  same 95,010 sentences; images are shared between the splits).
* RefCOCO, google split (refs and images only): the TensorFlow Datasets
  catalogue entry ``ref_coco``, computed from the same release.

Examples::

    python tools/dataset_converters/check_refer.py --data-root data/coco
    python tools/dataset_converters/check_refer.py --data-root data/coco \\
        --datasets refcoco refcoco+ --strict-counts
    python tools/dataset_converters/check_refer.py --data-root data/synthetic \\
        --datasets refsyn --img-dir images
"""
import argparse
import glob
import os
import os.path as osp
import re
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: {(data set, split by): {split: (refs, sentences or None, images)}}
PUBLISHED: Dict[Tuple[str, str], Dict[str, Tuple[int, Optional[int], int]]] = {
    ('refcoco', 'unc'): dict(train=(42404, 120624, 16994),
                             val=(3811, 10834, 1500),
                             testA=(1975, 5657, 750),
                             testB=(1810, 5095, 750)),
    ('refcoco+', 'unc'): dict(train=(42278, 120191, 16992),
                              val=(3805, 10758, 1500),
                              testA=(1975, 5726, 750),
                              testB=(1798, 4889, 750)),
    ('refcocog', 'umd'): dict(train=(42226, 80512, 21899),
                              val=(2573, 4896, 1300),
                              test=(5023, 9602, 2600)),
    ('refcocog', 'google'): dict(train=(44822, 85474, 24698),
                                 val=(5000, 9536, 4650)),
    ('refcoco', 'google'): dict(train=(40000, None, 19213),
                                val=(5000, None, 4559),
                                test=(5000, None, 4527)),
}
#: the refs files the configs read, per known data set
EXPECTED = {'refcoco': ('unc', ), 'refcoco+': ('unc', ),
            'refcocog': ('umd', 'google')}
DEFAULT_IMG_DIRS = ('train2014', 'images')
#: at most this many problems of one kind are listed
MAX_LISTED = 100
JPEG_END = b'\xff\xd9'


@dataclass
class Report:
    """What the checks found: problems by kind, notes, count tables."""
    problems: Dict[str, List[str]] = field(default_factory=OrderedDict)
    notes: List[str] = field(default_factory=list)

    def problem(self, kind: str, message: str) -> None:
        self.problems.setdefault(kind, []).append(message)


@dataclass
class Targets:
    """The images and masks the refs use, each with a ref that uses it."""
    images: Dict[str, Tuple[int, int, str]] = field(default_factory=dict)
    masks: Dict[Tuple[str, Any], Tuple[Any, int, int, str]] = field(
        default_factory=dict)


def find_datasets(data_root: str, names: Optional[Sequence[str]],
                  report: Report) -> List[str]:
    """Returns the data set folders to check: ``names``, or every folder of
    ``data_root`` holding an ``instances.json``."""
    if not osp.isdir(data_root):
        report.problem('files', f'--data-root {data_root} is not a folder')
        return []
    if names:
        found = []
        for name in names:
            if osp.isdir(osp.join(data_root, name)):
                found.append(name)
            else:
                report.problem('files', f'{osp.join(data_root, name)}: folder '
                               'not found')
        return found
    found = sorted(d for d in os.listdir(data_root)
                   if osp.isfile(osp.join(data_root, d, 'instances.json')))
    if not found:
        report.problem('files', f'{data_root} holds no data set folder (one '
                       'with instances.json), e.g. refcoco/')
    return found


def _split_bys(folder: str) -> List[str]:
    return sorted(re.fullmatch(r'refs\((.+)\)\.p', osp.basename(p)).group(1)
                  for p in glob.glob(osp.join(glob.escape(folder), 'refs(*).p')))


def check_dataset(data_root: str, name: str, img_dir: str, report: Report,
                  targets: Targets) -> List[Tuple[str, Dict[str, list]]]:
    """Reads one data set folder with the loader's code; returns per refs
    file its name and {split: [refs, sentences, image ids]}, and adds the
    images and masks its refs use to ``targets``."""
    from sera_mm.datasets.refcoco import RefCOCODataset
    from sera_mm.datasets.refer_pickle import load_refer_pickle
    folder = osp.join(data_root, name)
    bys = _split_bys(folder)
    for by in EXPECTED.get(name, ()):
        if by not in bys:
            report.notes.append(f'{folder}: no refs({by}).p (the configs of '
                                f'{name} {by} read it)')
    if not bys:
        report.problem('files', f'{folder}: no refs(<by>).p file')
        return []
    tables = []
    instances = None
    for by in bys:
        ds = RefCOCODataset(
            data_root=data_root, ann_file=f'{name}/instances.json',
            split_file=f'{name}/refs({by}).p',
            data_prefix=dict(img_path=img_dir.rstrip('/') + '/'),
            test_mode=True, check_images=False, lazy_init=True)
        if instances is None:
            instances = _load_instances(ds, report)
        try:
            refs = load_refer_pickle(ds.split_file)
        except Exception as e:  # truncated, corrupt, crafted: all named
            report.problem('files', f'{e} (download it again)')
            continue
        if not isinstance(refs, list):
            report.problem('files', f'{ds.split_file} must hold a list of '
                           f'refs, got {type(refs).__name__}')
            continue
        tables.append((ds.split_file, _count(refs)))
        if instances:
            _parse_refs(ds, refs, instances, report, targets)
    return tables


def _load_instances(ds: Any, report: Report) -> Optional[tuple]:
    if not osp.isfile(ds.ann_file):
        report.problem('files', f'{ds.ann_file}: file not found')
        return ()
    try:
        return ds.load_instances(ds.ann_file)
    except ValueError as e:
        report.problem('files', str(e))
        return ()


def _count(refs: list) -> Dict[str, list]:
    """{split: [refs, sentences, set of image ids]} of the refs as stored."""
    table: Dict[str, list] = OrderedDict()
    for ref in refs:
        if not isinstance(ref, dict) or type(ref.get('split')) is not str:
            continue
        row = table.setdefault(ref['split'], [0, 0, set()])
        row[0] += 1
        sents = ref.get('sentences')
        row[1] += len(sents) if isinstance(sents, list) else 0
        image_id = ref.get('image_id')
        if isinstance(image_id, (int, str)):
            row[2].add(image_id)
    return table


def _parse_refs(ds: Any, refs: list, instances: tuple, report: Report,
                targets: Targets) -> None:
    """Validates every ref with the loader's ``parse_ref``."""
    images, anns = instances
    prefix = ds.data_prefix.get('img_path', '')
    for n, ref in enumerate(refs):
        if not isinstance(ref, dict) or type(ref.get('split')) is not str:
            report.problem('refs', f"{ds.split_file}: ref #{n} has no 'split' "
                           'string (not a REFER ref dict)')
            continue
        try:
            info = ds.parse_ref(ref, n, images, anns, prefix)
        except (ValueError, TypeError, KeyError) as e:
            # the loader names a segmentation it cannot decode by its
            # annotation, everything else by the ref
            bad_mask = str(e).startswith(f'{ds.ann_file}: annotation ')
            report.problem('masks' if bad_mask else 'refs',
                           f'{e} (ref #{n} of {ds.split_file})' if bad_mask
                           else str(e))
            continue
        where = f'{ds.split_file}: ref_id {info["ref_id"]}'
        targets.images.setdefault(
            info['img_path'], (info['height'], info['width'], where))
        targets.masks.setdefault(
            (ds.ann_file, info['ann_id']),
            (info['segmentation'], info['height'], info['width'], where))


def _image_problem(path: str, hw: Tuple[int, int, str],
                   quick: bool) -> Optional[str]:
    """Returns what is wrong with one image file, or None."""
    height, width, where = hw
    if not osp.isfile(path):
        return f'{path}: missing (used by {where})'
    try:
        with open(path, 'rb') as f:
            data = f.read() if not quick else f.read(1)
    except OSError as e:
        return f'{path}: cannot be read ({e.strerror})'
    if not data:
        return f'{path}: empty file'
    if quick:
        return None
    import mmcv
    if data[:2] == b'\xff\xd8' and not data.rstrip(b'\x00').endswith(JPEG_END):
        return f'{path}: the JPEG is cut short (download it again)'
    try:
        img = mmcv.imfrombytes(data, flag='color_ignore_orientation')
    except Exception as e:  # the decoder raises various types
        img = None
        detail = f' ({type(e).__name__}: {e})'
    else:
        detail = ''
    if img is None:
        return f'{path}: not a readable image{detail}'
    if img.shape[:2] != (height, width):
        return (f'{path}: the image is {img.shape[0]} x {img.shape[1]} (h x w) '
                f'but instances.json says {height} x {width} (used by {where})')
    return None


def check_images(targets: Targets, quick: bool, workers: int,
                 report: Report) -> None:
    """Reads every image the refs use (a progress bar over them)."""
    from tqdm import tqdm
    paths = sorted(targets.images)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(
            lambda p: _image_problem(p, targets.images[p], quick), paths)
        for problem in tqdm(results, total=len(paths), desc='images',
                            unit='img', file=sys.stderr, mininterval=1):
            if problem:
                report.problem('images', problem)


def check_masks(targets: Targets, report: Report) -> None:
    """Decodes every mask the refs use with the pipeline's decoder."""
    from tqdm import tqdm

    from sera_mm.datasets.transforms.load_referring_mask import \
        decode_segmentation
    empty = []
    for (ann_file, ann_id), (seg, h, w, where) in tqdm(
            targets.masks.items(), desc='masks', unit='mask', file=sys.stderr,
            mininterval=1):
        try:
            mask = decode_segmentation(seg, h, w)
        except Exception as e:  # pycocotools raises various types
            report.problem('masks', f'{ann_file}: annotation {ann_id} (used by '
                           f'{where}) does not decode: {e}')
            continue
        if not mask.any():
            empty.append(f'{ann_id}')
    if empty:
        report.notes.append(
            f'{len(empty)} referred annotations have an empty mask (the '
            f'target has no pixel): {", ".join(empty[:MAX_LISTED])}')


def format_table(dataset: str, split_file: str, table: Dict[str, list],
                 report: Report, strict: bool) -> List[str]:
    """The count lines of one refs file beside the published counts; adds a
    note (or, if ``strict``, a problem) for each split that differs."""
    by = re.fullmatch(r'refs\((.+)\)\.p', osp.basename(split_file)).group(1)
    published = PUBLISHED.get((dataset, by))
    lines = [f'{split_file}' + ('' if published else
                                '  (no published counts for this set)')]
    splits = list(table) + [s for s in (published or {}) if s not in table]
    for split in splits:
        refs, sents, image_ids = table.get(split, (0, 0, set()))
        found = (refs, sents, len(image_ids))
        cells = []
        differs = []
        for k, what in enumerate(('refs', 'sentences', 'images')):
            want = published[split][k] if published and split in published \
                else None
            if want is None:
                cells.append(f'{what} {found[k]:>7,}')
            else:
                cells.append(f'{what} {found[k]:>7,} of {want:>7,}')
                if found[k] != want:
                    differs.append(f'{what} {found[k]:,} (published {want:,})')
        if published and split not in published:
            differs.append('not a published split')
        lines.append(f'  {split:6s} ' + '   '.join(cells)
                     + ('   <- differs' if differs else ''))
        if differs:
            message = f'{split_file} split {split}: {", ".join(differs)}'
            if strict:
                report.problem('counts', message)
            else:
                report.notes.append(message + ' (a partial or other release?)')
    return lines


def verdict(report: Report) -> str:
    """The last line: ``ready``, or what to fix, by kind."""
    if not report.problems:
        return 'ready'
    what = dict(files='files missing or unreadable',
                refs='refs the loader refuses',
                images='images missing, unreadable or of the wrong size',
                masks='masks that do not decode',
                counts='splits whose counts differ from the published ones')
    parts = [f'{len(v)} {what[k]}' for k, v in report.problems.items()]
    return 'to fix: ' + '; '.join(parts) + ' (listed above)'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses the command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__.split('Examples::')[0],
        epilog='examples:' + __doc__.split('Examples::')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/coco',
                   help='folder holding the images folder and one folder per '
                        'data set (data_root of the configs)')
    p.add_argument('--datasets', nargs='+', default=None,
                   help='data set folders to check (default: every folder of '
                        '--data-root with an instances.json)')
    p.add_argument('--img-dir', default=None,
                   help='images folder under --data-root (default: '
                        f'{" or ".join(DEFAULT_IMG_DIRS)}, the first found)')
    p.add_argument('--quick', action='store_true',
                   help='only check that the images exist and are not empty '
                        '(no decoding, no size check)')
    p.add_argument('--no-masks', action='store_true',
                   help='do not decode the masks')
    p.add_argument('--strict-counts', action='store_true',
                   help='counts that differ from the published ones are a '
                        'problem, not a note')
    p.add_argument('--workers', type=int, default=4,
                   help='threads reading images')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs every check; prints the report; returns 0 if ready, else 1."""
    args = parse_args(argv)
    report = Report()
    img_dir = args.img_dir or next(
        (d for d in DEFAULT_IMG_DIRS if osp.isdir(osp.join(args.data_root, d))),
        DEFAULT_IMG_DIRS[0])
    if not osp.isdir(osp.join(args.data_root, img_dir)):
        report.problem('files', f'{osp.join(args.data_root, img_dir)}: images '
                       'folder not found (--img-dir names it)')
    targets = Targets()
    lines = []
    for name in find_datasets(args.data_root, args.datasets, report):
        for split_file, table in check_dataset(args.data_root, name, img_dir,
                                               report, targets):
            lines += format_table(name, split_file, table, report,
                                  args.strict_counts)
    if targets.images:
        check_images(targets, args.quick, args.workers, report)
    if targets.masks and not args.no_masks:
        check_masks(targets, report)
    print('\n'.join(lines))
    print(f'images: {len(targets.images):,} checked under '
          f'{osp.join(args.data_root, img_dir)}; masks: '
          f'{0 if args.no_masks else len(targets.masks):,} decoded')
    for note in report.notes:
        print(f'note: {note}')
    for kind, problems in report.problems.items():
        print(f'{kind}: {len(problems)} problem(s)')
        for p in problems[:MAX_LISTED]:
            print(f'  {p}')
        if len(problems) > MAX_LISTED:
            print(f'  ... and {len(problems) - MAX_LISTED} more')
    print(verdict(report))
    return 1 if report.problems else 0


if __name__ == '__main__':
    sys.exit(main())
