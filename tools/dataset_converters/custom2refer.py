"""Turns your own labelled photos into the REFER files sera_mm trains on.

Two inputs are read:

* ``coco``: a COCO instances file (exported by CVAT, Label Studio, Roboflow
  or written with pycocotools), the folder of its images, and a sentences
  file with one sentence per line: JSON Lines (``.jsonl``) or CSV (``.csv``,
  a header row) with the fields ``image`` (file name or image id), ``ann_id``
  (one id, several ids as a list or separated by spaces, commas or
  semicolons, or ``-1`` for a sentence that names no object), ``sentence``
  and, optionally, ``split``.
* ``labelme``: a folder of LabelMe files (``*.json``, searched recursively),
  one per photo, each shape a polygon (or rectangle, or circle) of one
  object; the sentences of a shape are the lines of its ``description``, or
  its ``label`` when the description is empty. Shapes that share a
  ``group_id`` are one object.

What is written (``--out``, ``--name`` and ``--split-by`` name the parts)::

    <out>/images/...                      the photos (copied, or --symlink)
    <out>/<name>/instances.json           COCO images, annotations, categories
    <out>/<name>/refs(<split-by>).p       REFER refs: each sentence names one
                                          object (what RefCOCODataset reads)
    <out>/<name>/grefs(<split-by>).json   instead, when a sentence names several
                                          objects or none: gRefCOCO's layout,
                                          ann_id a list, [-1] for no object
                                          (what GRefCOCODataset reads)

Splits are drawn by image, never by sentence, so no image is in two splits:
the images without a ``split`` in the sentences file are shuffled with
``--seed`` and cut by ``--splits`` ratios (the same input and seed give the
same splits). Every problem in the input (an annotation id that does not
exist, a polygon outside its image, a missing or unreadable image, a
sentence with no annotation ...) is listed with its file and line, all in
one run, and then nothing is written. Images without a sentence are left
out (a note says how many). A photo whose EXIF orientation turns
it is written upright, so that its pixels match the annotation (annotation
tools draw on the turned photo; the loaders read the stored pixels).

Examples::

    python tools/dataset_converters/custom2refer.py coco \\
        --instances export/instances.json --images export/images \\
        --sentences sentences.csv --out data/mydata
    python tools/dataset_converters/custom2refer.py labelme photos/ \\
        --out data/myphotos --splits train=0.8 val=0.2 --seed 1 \\
        --config-out configs/custom/sera_myphotos.py
"""
import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import pickle
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from sera_mm.datasets.refcoco import KNOWN_SPLITS, MAX_IMAGE_SIDE
from sera_mm.datasets.transforms.load_referring_mask import \
    validate_segmentation
from sera_mm.utils.atomic import atomic_write_bytes

IMAGE_DIR = 'images'
DEFAULT_SPLITS = ('train=0.8', 'val=0.1', 'test=0.1')
DEFAULT_BASE_CONFIG = 'configs/sera/sera_dinov2-b_refcoco.py'
#: a polygon point may lie this many pixels outside its image (the edge of
#: the last pixel is at width, not width - 1; tools round to half pixels)
POLYGON_TOLERANCE = 0.5
#: sides of the polygon a LabelMe circle becomes
CIRCLE_SIDES = 32
#: marks a sentence that names no object (gRefCOCO's convention)
NO_TARGET = -1
EXIF_ORIENTATION = 0x0112
#: EXIF orientations that swap width and height
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
#: the fields of a sentences file, each with the names it is found under
#: (case does not matter)
SENTENCE_FIELDS = dict(
    image=('image', 'image_id', 'file_name', 'img'),
    ann_id=('ann_id', 'ann_ids', 'annotation_id', 'annotation_ids'),
    sentence=('sentence', 'sent', 'text', 'expression', 'caption'),
    split=('split', ))
PROBLEMS_SHOWN = 200


@dataclass
class Photo:
    """One image of the input: where its file is and its annotated size."""
    image_id: Any
    file_name: str  # its name under <out>/images/
    src: str  # the file read
    width: int
    height: int
    where: str  # the input location that declares it
    transpose: bool = False  # write it upright from its EXIF orientation


@dataclass
class Obj:
    """One annotated object (a COCO annotation)."""
    ann_id: Any
    image_id: Any
    segmentation: Any  # polygons (list) or RLE (dict)
    category_id: Any
    iscrowd: int
    where: str
    area: float = 0.0
    bbox: List[float] = field(default_factory=list)


@dataclass
class Sentence:
    """One sentence and the objects it names (an empty tuple: none)."""
    text: str
    image_id: Any
    ann_ids: Tuple[Any, ...]
    split: Optional[str]
    where: str


@dataclass
class Collected:
    """What a reader found, and the problems it met."""
    photos: Dict[Any, Photo] = field(default_factory=OrderedDict)
    objects: Dict[Any, Obj] = field(default_factory=OrderedDict)
    sentences: List[Sentence] = field(default_factory=list)
    categories: List[dict] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: ids of images and annotations already reported as broken
    broken: set = field(default_factory=set)

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f'{where}: {message}')


# --------------------------------------------------------------------------
# small checks
# --------------------------------------------------------------------------
def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool) \
        and value != ''


def _side(value: Any) -> Optional[int]:
    """Returns an image side as int, or None unless it is a whole number in
    [1, MAX_IMAGE_SIDE] (the loader's rule)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value != int(value) \
            or not 0 < value <= MAX_IMAGE_SIDE:
        return None
    return int(value)


def _words(text: str) -> List[str]:
    """REFER's ``tokens``: the lower-cased words of a sentence."""
    return re.findall(r"\w+(?:'\w+)*", text.lower())


def _check_polygons(polygons: Any, width: int, height: int) -> Optional[str]:
    """Returns what is wrong with COCO polygons for a width x height image
    (None if nothing): too few points, not numbers, or a point outside."""
    if not isinstance(polygons, list) or not polygons:
        return 'has no polygon (a box alone is not a mask: draw a polygon)'
    for k, poly in enumerate(polygons):
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            n = len(poly) // 2 if isinstance(poly, list) else 0
            return (f'polygon {k} has {n} points; a polygon needs at least 3 '
                    '(x, y) points')
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v) for v in poly):
            return f'polygon {k} holds a coordinate that is not a finite number'
        for x, y in zip(poly[0::2], poly[1::2]):
            if not (-POLYGON_TOLERANCE <= x <= width + POLYGON_TOLERANCE
                    and -POLYGON_TOLERANCE <= y <= height + POLYGON_TOLERANCE):
                return (f'polygon {k} has the point ({x:g}, {y:g}) outside its '
                        f'{width} x {height} image (width x height)')
    return None


def _rle_problem(seg: dict, width: int, height: int) -> Optional[str]:
    try:
        validate_segmentation(seg, height, width, 'RLE')
    except ValueError as e:
        return str(e)
    return None


def _measure(obj: Obj, photo: Photo) -> Optional[str]:
    """Fills ``obj.area`` and ``obj.bbox`` from its decoded mask; returns a
    problem if the mask is empty."""
    from pycocotools import mask as mask_utils
    seg, h, w = obj.segmentation, photo.height, photo.width
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg.get('counts'), list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = dict(size=seg['size'], counts=seg['counts'].encode('ascii')
                   if isinstance(seg['counts'], str) else seg['counts'])
    obj.area = float(mask_utils.area(rle))
    obj.bbox = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
    if obj.area == 0:
        return 'its mask is empty (no pixel inside)'
    return None


# --------------------------------------------------------------------------
# reading COCO + sentences
# --------------------------------------------------------------------------
def _load_json(path: str, found: Collected) -> Any:
    try:
        with open(path, 'rb') as f:
            return json.load(f)
    except FileNotFoundError:
        found.problem(path, 'file not found')
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        found.problem(path, f'not valid JSON ({e})')
    except OSError as e:
        found.problem(path, f'cannot be read ({e.strerror})')
    return None


def read_coco(instances: str, images_dir: str, sentences: str) -> Collected:
    """Reads a COCO instances file and a sentences file; called by
    :func:`main` for ``coco``. Returns what it found and every problem."""
    found = Collected()
    inst = _load_json(instances, found)
    have_instances = inst is not None and _read_coco_instances(
        inst, instances, images_dir, found)
    by_name: Dict[str, List[Any]] = {}
    for photo in found.photos.values():
        by_name.setdefault(photo.file_name, []).append(photo.image_id)
        by_name.setdefault(osp.basename(photo.file_name), []).append(
            photo.image_id)
    known = {k for keys in SENTENCE_FIELDS.values() for k in keys}
    unknown: set = set()
    for where, row in _sentence_rows(sentences, found):
        unknown.update(set(row) - known)
        _read_sentence(row, where, found, by_name, have_instances)
    if unknown:
        found.notes.append(
            f'{sentences}: field(s) {sorted(unknown)} ignored; the fields are '
            'image, ann_id, sentence and (optional) split')
    return found


def _read_coco_instances(inst: Any, path: str, images_dir: str,
                         found: Collected) -> bool:
    """Collects the images and annotations of a loaded instances file;
    returns False if it is not one (no lists of images and annotations)."""
    if not isinstance(inst, dict):
        found.problem(path, "must hold a JSON object with 'images' and "
                      "'annotations' (a COCO instances file)")
        return False
    missing = [key for key in ('images', 'annotations')
               if not isinstance(inst.get(key), list)]
    for key in missing:
        found.problem(path, f"has no list under key '{key}'")
    if missing:
        return False
    for k, img in enumerate(inst['images']):
        where = f'{path}: images[{k}]'
        if not isinstance(img, dict) or not _is_id(img.get('id')):
            found.problem(where, "has no 'id' (an int or a string)")
            continue
        where = f'{path}: image id {img["id"]}'
        if img['id'] in found.photos:
            found.problem(where, 'appears more than once')
            continue
        found.broken.add(img['id'])
        name = img.get('file_name')
        width, height = _side(img.get('width')), _side(img.get('height'))
        if not isinstance(name, str) or not name:
            found.problem(where, "has no 'file_name'")
        elif osp.isabs(name) or '..' in name.replace('\\', '/').split('/'):
            found.problem(where, f'file_name {name!r} must be a path inside '
                          f'the --images folder ({images_dir})')
        elif width is None or height is None:
            found.problem(where, "'width' and 'height' must be whole numbers "
                          f'in [1, {MAX_IMAGE_SIDE}], got {img.get("width")!r} '
                          f'x {img.get("height")!r}')
        else:
            name = name.replace('\\', '/')
            found.broken.discard(img['id'])
            found.photos[img['id']] = Photo(
                img['id'], name, osp.join(images_dir, name), width, height,
                where)
    for k, ann in enumerate(inst['annotations']):
        where = f'{path}: annotations[{k}]'
        if not isinstance(ann, dict) or not _is_id(ann.get('id')):
            found.problem(where, "has no 'id' (an int or a string)")
            continue
        where = f'{path}: annotation id {ann["id"]}'
        if ann['id'] in found.objects:
            found.problem(where, 'appears more than once')
            continue
        image_id = ann.get('image_id')
        if not _is_id(image_id) or image_id not in found.photos:
            if not (_is_id(image_id) and image_id in found.broken):
                found.problem(where, f'its image_id {image_id!r} is not an '
                              f'image of {path}')
            found.broken.add(ann['id'])
            continue
        found.objects[ann['id']] = Obj(
            ann['id'], image_id, ann.get('segmentation'),
            ann.get('category_id', 1), int(bool(ann.get('iscrowd', 0))), where)
    cats = inst.get('categories')
    if isinstance(cats, list) and all(isinstance(c, dict) and 'id' in c
                                      for c in cats):
        found.categories = cats
    return True


def _sentence_rows(path: str, found: Collected) -> Iterator[Tuple[str, dict]]:
    """Yields (``file:line``, row dict) of a JSON Lines or CSV sentences
    file; unreadable lines become problems."""
    ext = osp.splitext(path)[1].lower()
    if ext not in ('.jsonl', '.ndjson', '.csv', '.tsv'):
        found.problem(path, 'the sentences file must be JSON Lines (.jsonl) '
                      'or CSV (.csv, .tsv)')
        return
    try:
        with open(path, encoding='utf-8-sig', newline='') as f:
            text = f.read()
    except FileNotFoundError:
        found.problem(path, 'file not found')
        return
    except (OSError, UnicodeDecodeError) as e:
        found.problem(path, f'cannot be read as UTF-8 text ({e})')
        return
    if ext in ('.jsonl', '.ndjson'):
        # '\n' only: JSON strings may hold other line separators (U+2028)
        for n, line in enumerate(text.split('\n'), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                found.problem(f'{path}:{n}', f'not a JSON object ({e.msg})')
                continue
            if not isinstance(row, dict):
                found.problem(f'{path}:{n}', 'not a JSON object')
                continue
            yield f'{path}:{n}', {k.strip().lower(): v for k, v in row.items()}
        return
    reader = csv.DictReader(io.StringIO(text, newline=''),
                            delimiter='\t' if ext == '.tsv' else ',')
    if not reader.fieldnames:
        found.problem(path, 'is empty; the first line must name the columns '
                      '(image, ann_id, sentence[, split])')
        return
    for row in reader:
        # the line the row ends on (a quoted value may span lines)
        where = f'{path}:{reader.line_num}'
        if None in row:
            found.problem(where, f'has more values than the header has columns '
                          f'({", ".join(reader.fieldnames)})')
            continue
        if all(v is None or not v.strip() for v in row.values()):
            continue
        yield where, {k.strip().lower(): v for k, v in row.items()
                      if v is not None}


def _field(row: dict, name: str) -> Any:
    """The value of field ``name`` in a row (under any of its names)."""
    for key in SENTENCE_FIELDS[name]:
        if key in row:
            return row[key]
    return None


def _parse_ann_ids(value: Any) -> Tuple[Optional[List[Any]], Optional[str]]:
    """Returns (ids, None) or (None, problem) for an ``ann_id`` value: an
    id, a list of ids, or a string of ids (JSON list, or separated by
    spaces, commas or semicolons); [] when it is empty."""
    if value is None:
        return [], None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith('['):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None, f'ann_id {value!r} is not a list of ids'
        else:
            value = [t for t in re.split(r'[\s,;|]+', text) if t]
    if not isinstance(value, list):
        value = [value]
    ids = []
    for v in value:
        if isinstance(v, str) and re.fullmatch(r'[+-]?\d+', v.strip()):
            v = int(v)
        if not _is_id(v):
            return None, f'ann_id {v!r} is not an id'
        ids.append(v)
    return ids, None


def _read_sentence(row: dict, where: str, found: Collected,
                   by_name: Dict[str, List[Any]], have_instances: bool) -> None:
    """Checks one row of the sentences file (every problem of it) and adds
    its sentence to ``found`` if it has none."""
    for name, keys in SENTENCE_FIELDS.items():
        given = [k for k in keys if k in row]
        if len(given) > 1:
            found.problem(where, f'gives the {name} twice ({", ".join(given)})')
            return
    problems = len(found.problems)
    text = _field(row, 'sentence')
    if not isinstance(text, str) or not text.strip():
        found.problem(where, 'has no sentence')
        text = ''
    elif not _words(text):
        found.problem(where, f'the sentence {text!r} has no word')
    split = _field(row, 'split')
    if isinstance(split, str):
        split = split.strip() or None
    if split is not None and split not in KNOWN_SPLITS:
        found.problem(where, f'split {split!r} is not one of '
                      f'{list(KNOWN_SPLITS)}')
    ann_ids, error = _parse_ann_ids(_field(row, 'ann_id'))
    if error:
        found.problem(where, error)
        return
    if not ann_ids:
        found.problem(where, f'the sentence {text.strip()!r} has no annotation: '
                      'give its ann_id, or -1 if it names no object')
        return
    if NO_TARGET in ann_ids and len(ann_ids) > 1:
        found.problem(where, f'ann_id {ann_ids} mixes -1 (no object) with '
                      'objects')
        return
    if not have_instances:
        return  # the instances file itself is at fault (reported)
    ok = True
    image_id = None
    image = _field(row, 'image')
    if image is not None and not (isinstance(image, str) and not image.strip()):
        image_id = _resolve_image(image, found, by_name)
        if image_id is None and not (_is_id(image) and image in found.broken):
            found.problem(where, f'image {image!r} is not an image (file_name '
                          'or id) of the instances file')
        ok = image_id is not None
    targets = []
    for a in dict.fromkeys(a for a in ann_ids if a != NO_TARGET):
        key = a if a in found.objects else str(a)
        if key in found.objects:
            targets.append(key)
            continue
        if a not in found.broken:
            found.problem(where, f'annotation id {a} does not exist in the '
                          'instances file')
        ok = False
    if not ok:
        return
    owners = list(dict.fromkeys(found.objects[a].image_id for a in targets))
    if image_id is None:
        if not owners:
            found.problem(where, 'a sentence that names no object (-1) needs '
                          'its image')
            return
        if len(owners) > 1:
            found.problem(where, f'annotations {targets} belong to different '
                          f'images ({owners})')
            return
        image_id = owners[0]
    bad = [a for a in targets if found.objects[a].image_id != image_id]
    if bad:
        found.problem(where, f'annotation id {bad[0]} belongs to image '
                      f'{found.objects[bad[0]].image_id}, not to image '
                      f'{image_id}')
        return
    if len(found.problems) == problems:
        found.sentences.append(Sentence(text.strip(), image_id,
                                        tuple(targets), split, where))


def _resolve_image(value: Any, found: Collected,
                   by_name: Dict[str, List[Any]]) -> Optional[Any]:
    """Returns the image id a sentence's ``image`` names (file name, base
    name or id), or None."""
    if isinstance(value, str):
        name = value.strip().replace('\\', '/')
        for key in (name, osp.basename(name)):
            ids = set(by_name.get(key, []))
            if len(ids) == 1:
                return ids.pop()
        if name in found.photos:
            return name
        if re.fullmatch(r'\d+', name) and int(name) in found.photos:
            return int(name)
        return None
    return value if _is_id(value) and value in found.photos else None


# --------------------------------------------------------------------------
# reading LabelMe
# --------------------------------------------------------------------------
def read_labelme(folder: str) -> Collected:
    """Reads a folder of LabelMe files; called by :func:`main` for
    ``labelme``. Returns what it found and every problem."""
    found = Collected()
    if not osp.isdir(folder):
        found.problem(folder, 'folder not found')
        return found
    files = sorted(osp.join(d, f) for d, _, names in os.walk(folder)
                   for f in names if f.lower().endswith('.json'))
    if not files:
        found.problem(folder, 'holds no LabelMe file (*.json)')
        return found
    categories: Dict[str, int] = {}
    sources: Dict[str, str] = {}
    for path in files:
        data = _load_json(path, found)
        if data is None:
            continue
        if not isinstance(data, dict) or not isinstance(data.get('shapes'),
                                                        list):
            found.problem(path, "not a LabelMe file (no list under 'shapes')")
            continue
        width, height = _side(data.get('imageWidth')), _side(
            data.get('imageHeight'))
        image_path = data.get('imagePath')
        if not isinstance(image_path, str) or not image_path:
            found.problem(path, "has no 'imagePath'")
            continue
        if width is None or height is None:
            found.problem(path, "'imageWidth' and 'imageHeight' must be whole "
                          f'numbers in [1, {MAX_IMAGE_SIDE}]')
            continue
        src = osp.normpath(osp.join(osp.dirname(path),
                                    image_path.replace('\\', '/')))
        rel = osp.relpath(src, folder)
        name = (osp.basename(src) if rel.startswith('..') else rel).replace(
            os.sep, '/')
        if name in sources:
            found.problem(path, f'its image {image_path} is also the image of '
                          f'{sources[name]} (or has the same file name): one '
                          'LabelMe file per photo')
            continue
        sources[name] = path
        image_id = len(found.photos) + 1
        photo = Photo(image_id, name, src, width, height, path)
        if data.get('imageData') and not osp.isfile(src):
            found.notes.append(f'{path} embeds its photo (imageData); the '
                               'converter reads the photo file itself')
        found.photos[image_id] = photo
        _read_labelme_shapes(data['shapes'], path, photo, found, categories)
    found.categories = [dict(id=i, name=n) for n, i in categories.items()]
    return found


def _shape_polygon(shape: dict) -> Tuple[Optional[List[float]], Optional[str]]:
    """Returns (flat polygon, None) of a LabelMe shape, or (None, problem)."""
    kind = shape.get('shape_type') or 'polygon'
    points = shape.get('points')
    if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v) for v in p) for p in points):
        return None, "its 'points' are not a list of [x, y] numbers"
    if kind == 'polygon':
        if len(points) < 3:
            return None, (f'its polygon has {len(points)} points; draw at '
                          'least 3')
        return [float(v) for p in points for v in p], None
    if kind == 'rectangle' and len(points) == 2:
        (x0, y0), (x1, y1) = points
        return [x0, y0, x1, y0, x1, y1, x0, y1], None
    if kind == 'circle' and len(points) == 2:
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        angles = np.linspace(0, 2 * np.pi, CIRCLE_SIDES, endpoint=False)
        return [round(float(v), 2) for a in angles
                for v in (cx + r * np.cos(a), cy + r * np.sin(a))], None
    return None, (f"shape_type {kind!r} is not a region: draw a polygon, "
                  'rectangle or circle')


def _read_labelme_shapes(shapes: List[Any], path: str, photo: Photo,
                         found: Collected, categories: Dict[str, int]) -> None:
    """Turns the shapes of one LabelMe file into objects and sentences: the
    sentences of an object are the description lines of its shapes, or its
    labels when no shape of it has a description."""
    groups: Dict[Any, Obj] = OrderedDict()
    described: Dict[Any, List[Tuple[str, str]]] = {}
    labelled: Dict[Any, List[Tuple[str, str]]] = {}
    for k, shape in enumerate(shapes):
        where = f'{path}: shape {k}'
        if not isinstance(shape, dict):
            found.problem(where, 'not a LabelMe shape (an object)')
            continue
        label = shape.get('label') if isinstance(shape.get('label'), str) \
            else ''
        label = label.strip()
        where = f'{path}: shape {k} ({label!r})'
        description = shape.get('description')
        lines = [s.strip() for s in description.splitlines() if s.strip()] \
            if isinstance(description, str) else []
        group = shape.get('group_id')
        key = ('group', group) if group is not None else ('shape', k)
        if not lines and not label and key not in groups:
            found.problem(where, 'has no sentence: write it in the label or '
                          'the description')
        for s in lines + [label]:
            if s and not _words(s):
                found.problem(where, f'the sentence {s!r} has no word')
        polygon, error = _shape_polygon(shape)
        if error:
            found.problem(where, error)
            continue
        if key not in groups:
            category = label if lines and label else 'object'
            groups[key] = Obj(len(found.objects) + len(groups) + 1,
                              photo.image_id, [],
                              categories.setdefault(category,
                                                    len(categories) + 1),
                              0, where)
            described[key], labelled[key] = [], []
        groups[key].segmentation.append(polygon)
        described[key] += [(s, where) for s in lines if _words(s)]
        if label and _words(label):
            labelled[key].append((label, where))
    for key, obj in groups.items():
        found.objects[obj.ann_id] = obj
        sentences = described[key] or labelled[key]
        for text in dict.fromkeys(text for text, _ in sentences):
            where = next(w for t, w in sentences if t == text)
            found.sentences.append(Sentence(text, photo.image_id,
                                            (obj.ann_id, ), None, where))


# --------------------------------------------------------------------------
# checks shared by both inputs
# --------------------------------------------------------------------------
def check_photo(photo: Photo) -> Optional[str]:
    """Reads the photo; returns a problem (missing, unreadable, or a size
    other than the annotated one), else None. Sets ``photo.transpose`` when
    the annotation matches the photo turned by its EXIF orientation."""
    from PIL import Image
    if not osp.isfile(photo.src):
        return f'image file not found: {photo.src}'
    try:
        with Image.open(photo.src) as im:
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            im.load()  # decodes the pixels: a truncated file fails here
            w, h = im.size
    except Exception as e:  # PIL raises many types for a broken file
        return f'image file {photo.src} cannot be read ({type(e).__name__}: {e})'
    if orientation not in range(2, 9):
        orientation = 1
    upright = (h, w) if orientation in SWAPPING_ORIENTATIONS else (w, h)
    annotated = (photo.width, photo.height)
    if orientation != 1 and annotated == upright:
        photo.transpose = True
    elif annotated != (w, h):
        turned = f' ({upright[0]} x {upright[1]} turned upright by its EXIF ' \
            'orientation)' if upright != (w, h) else ''
        return (f'image file {photo.src} is {w} x {h}{turned}, but the '
                f'annotation says {photo.width} x {photo.height} (width x '
                'height): was the photo replaced or resized after labelling?')
    return None


def check_objects(found: Collected, used_images: set) -> None:
    """Checks the segmentation of every object of the used images (polygons
    inside the image, RLE of its size, a mask that is not empty) and fills
    their area and box."""
    for obj in found.objects.values():
        if obj.image_id not in used_images:
            continue
        photo = found.photos[obj.image_id]
        seg = obj.segmentation
        if isinstance(seg, dict):
            error = _rle_problem(seg, photo.width, photo.height)
        else:
            error = _check_polygons(seg, photo.width, photo.height)
        if error is None:
            error = _measure(obj, photo)
        if error:
            found.problem(obj.where, error)


def parse_ratios(items: Sequence[str]) -> Tuple[Dict[str, float], List[str]]:
    """Parses ``--splits`` items ``name=ratio``; returns (ratios, problems)."""
    ratios: Dict[str, float] = OrderedDict()
    problems = []
    for item in items:
        name, _, value = item.partition('=')
        try:
            ratio = float(value)
        except ValueError:
            ratio = -1.0
        if name not in KNOWN_SPLITS or not math.isfinite(ratio) or ratio < 0 \
                or name in ratios:
            problems.append(f'--splits: {item!r} must be NAME=RATIO, NAME one '
                            f'of {list(KNOWN_SPLITS)} (once), RATIO >= 0')
            continue
        if ratio > 0:
            ratios[name] = ratio
    if not problems and not ratios:
        problems.append('--splits: give at least one split a ratio above 0')
    return ratios, problems


def assign_splits(names: Sequence[str], ratios: Dict[str, float],
                  seed: int) -> Dict[str, str]:
    """Splits images by name: shuffles the sorted names with ``seed`` and
    cuts them by ``ratios`` (largest remainders round; every split gets an
    image while another has two). Returns {name: split}."""
    names = sorted(names)
    n = len(names)
    total = sum(ratios.values())
    exact = {s: r / total * n for s, r in ratios.items()}
    counts = {s: int(math.floor(v)) for s, v in exact.items()}
    order = list(ratios)
    by_remainder = sorted(order, key=lambda s: (counts[s] - exact[s],
                                                order.index(s)))
    for s in by_remainder[:n - sum(counts.values())]:
        counts[s] += 1
    for s in order:
        if counts[s] == 0:
            donor = max(order, key=lambda d: counts[d])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[s] += 1
    perm = np.random.default_rng(seed).permutation(n)
    out, pos = {}, 0
    for s in order:
        for i in perm[pos:pos + counts[s]]:
            out[names[int(i)]] = s
        pos += counts[s]
    return out


def plan_splits(found: Collected, ratios: Dict[str, float],
                seed: int) -> Dict[Any, str]:
    """Returns {image_id: split} for the images with sentences: the split
    the sentences give (all of an image's sentences must agree), else drawn
    by :func:`assign_splits`."""
    fixed: Dict[Any, Tuple[str, str]] = {}
    for s in found.sentences:
        if s.split is None:
            continue
        if s.image_id in fixed and fixed[s.image_id][0] != s.split:
            first_split, first_where = fixed[s.image_id]
            found.problem(s.where, f'split {s.split!r}, but {first_where} puts '
                          f'the same image in {first_split!r}: an image is in '
                          'one split only')
        fixed.setdefault(s.image_id, (s.split, s.where))
    used = list(dict.fromkeys(s.image_id for s in found.sentences))
    free = [i for i in used if i not in fixed]
    name_of = {i: found.photos[i].file_name for i in free}
    drawn = assign_splits(list(name_of.values()), ratios, seed)
    splits = {i: fixed[i][0] if i in fixed else drawn[name_of[i]]
              for i in used}
    if free and not found.problems:  # with lines dropped, counts mislead
        empty = [s for s in ratios if s not in splits.values()]
        if empty:
            found.problem('--splits', f'split(s) {empty} get no image: '
                          f'{len(used)} images cannot fill {len(ratios)} '
                          'splits; give fewer splits or more images')
    return splits


# --------------------------------------------------------------------------
# building and writing
# --------------------------------------------------------------------------
def build_refs(found: Collected, splits: Dict[Any, str],
               grefer: bool) -> List[dict]:
    """Groups the sentences into refs, one per (image, objects named), in
    the order of the input; REFER's layout, or gRefCOCO's when ``grefer``."""
    groups: Dict[Tuple[Any, Tuple[Any, ...]], List[Sentence]] = OrderedDict()
    for s in found.sentences:
        groups.setdefault((s.image_id, s.ann_ids), []).append(s)
    refs, sent_id = [], 0
    for ref_id, ((image_id, targets), sents) in enumerate(groups.items()):
        sentences = []
        for s in sents:
            tokens = _words(s.text)
            sentences.append(dict(tokens=tokens, raw=s.text,
                                  sent_id=sent_id, sent=' '.join(tokens)))
            sent_id += 1
        photo = found.photos[image_id]
        stem, ext = osp.splitext(photo.file_name)
        cats = [found.objects[a].category_id for a in targets]
        ref = dict(sent_ids=[x['sent_id'] for x in sentences],
                   file_name=photo.file_name, ref_id=ref_id,
                   image_id=image_id, split=splits[image_id],
                   sentences=sentences)
        if grefer:
            ref.update(ann_id=list(targets) or [NO_TARGET],
                       category_id=cats or [NO_TARGET],
                       no_target=not targets)
        else:
            # REFER names a ref's file '<image stem>_<ann_id>.<ext>'
            ref.update(ann_id=targets[0], category_id=cats[0],
                       file_name=f'{stem}_{targets[0]}{ext}')
        refs.append(ref)
    return refs


def build_instances(found: Collected, used_images: set) -> dict:
    """The COCO instances of the used images (and all their objects)."""
    images = [dict(id=p.image_id, file_name=p.file_name, height=p.height,
                   width=p.width)
              for p in found.photos.values() if p.image_id in used_images]
    annotations = [dict(id=o.ann_id, image_id=o.image_id,
                        category_id=o.category_id, segmentation=o.segmentation,
                        area=o.area, bbox=o.bbox, iscrowd=o.iscrowd)
                   for o in found.objects.values() if o.image_id in used_images]
    cats = found.categories or [
        dict(id=c, name=str(c)) for c in sorted(
            {a['category_id'] for a in annotations}, key=str)]
    return dict(info=dict(description='written by sera_mm '
                          'tools/dataset_converters/custom2refer.py'),
                images=images, annotations=annotations, categories=cats)


def _photo_bytes(photo: Photo) -> bytes:
    """The bytes to write for a photo: the file itself, or the photo turned
    upright (same format, without EXIF) when ``photo.transpose``."""
    with open(photo.src, 'rb') as f:
        data = f.read()
    if not photo.transpose:
        return data
    from PIL import Image, ImageOps
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format or 'PNG'
        upright = ImageOps.exif_transpose(im)
        buf = io.BytesIO()
        save = dict(quality=95) if fmt == 'JPEG' else {}
        upright.save(buf, format=fmt, **save)
    return buf.getvalue()


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(',', ':'), ensure_ascii=False)
            + '\n').encode('utf-8')


def serialize(instances: dict, refs: List[dict],
              refs_path: str) -> Dict[str, bytes]:
    """The bytes of instances.json and of the refs file (a pickle of
    protocol 2, REFER's, or gRefCOCO's JSON)."""
    refs_bytes = _json_bytes(refs) if refs_path.endswith('.json') \
        else pickle.dumps(refs, protocol=2)
    return {osp.join(osp.dirname(refs_path), 'instances.json'):
            _json_bytes(instances), refs_path: refs_bytes}


def _same_bytes(path: str, data: bytes) -> bool:
    if not osp.isfile(path) or osp.islink(path) \
            or osp.getsize(path) != len(data):
        return False
    with open(path, 'rb') as f:
        return f.read() == data


def check_outputs(out: str, files: Dict[str, bytes], photos: Sequence[Photo],
                  symlink: bool, force: bool) -> List[str]:
    """Problems with the output: a file there with other content, which only
    ``--force`` replaces (the same content is fine: a rerun is a no-op)."""
    if force:
        return []
    problems = [f'{p}: exists with other content; pass --force to replace it'
                for p, data in files.items()
                if osp.lexists(p) and not _same_bytes(p, data)]
    for photo in photos:
        dest = osp.join(out, IMAGE_DIR, photo.file_name)
        if not osp.lexists(dest):
            continue
        if symlink and not photo.transpose:
            same = osp.islink(dest) and os.readlink(dest) == osp.abspath(
                photo.src)
        else:
            same = _same_bytes(dest, _photo_bytes(photo))
        if not same:
            problems.append(f'{dest}: exists with other content; pass --force '
                            'to replace it')
    return problems


def write_outputs(out: str, photos: Sequence[Photo], files: Dict[str, bytes],
                  symlink: bool) -> None:
    """Writes the photos, then ``files`` in order (the refs file last: its
    presence means the rest is complete), each atomically; files that hold
    those bytes already are left alone."""
    for photo in photos:
        dest = osp.join(out, IMAGE_DIR, photo.file_name)
        os.makedirs(osp.dirname(dest), exist_ok=True)
        if symlink and not photo.transpose:
            if osp.lexists(dest):
                os.remove(dest)
            os.symlink(osp.abspath(photo.src), dest)
            continue
        data = _photo_bytes(photo)
        if not _same_bytes(dest, data):
            if osp.islink(dest):
                os.remove(dest)
            atomic_write_bytes(dest, data)
    for path, data in files.items():
        if not _same_bytes(path, data):
            atomic_write_bytes(path, data)


def config_text(config_path: str, base: str, out: str, name: str,
                refs_name: str, split_names: Sequence[str]) -> str:
    """The five-line config that trains ``base`` on the written set, for a
    config file at ``config_path`` (``_base_`` is relative to its folder);
    a gRefCOCO set adds GRES's metric (six lines)."""
    base_rel = osp.relpath(osp.abspath(base),
                           osp.dirname(osp.abspath(config_path)))
    heldout = [s for s in split_names if s != 'train'] or ['train']
    val = 'val' if 'val' in heldout else heldout[0]
    gref = "type='GRefCOCODataset', " if refs_name.startswith('grefs') else ''
    data = (f"dict({gref}data_root={out.rstrip('/') + '/'!r}, "
            f"ann_file='{name}/instances.json', split_file='{name}/{refs_name}', "
            f"data_prefix=dict(img_path='{IMAGE_DIR}/'))")
    val_data = '_data' if val == 'val' else f'dict(_data, split={val!r})'
    return (f'_base_ = {base_rel.replace(os.sep, "/")!r}\n'
            f'_data = {data}\n'
            'train_dataloader = dict(dataset=_data)\n'
            f'val_dataloader = test_dataloader = dict(dataset={val_data})\n'
            f'test_cfg = dict(splits={heldout!r})\n'
            + ("val_evaluator = test_evaluator = dict(type='GRefSegMetric')\n" if gref else ''))


def _print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        print(f'note: {note}')


def _location_key(problem: str) -> List[Any]:
    """Sorts problems by file, then by line or id numerically."""
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', problem)]


def _print_problems(problems: Sequence[str]) -> None:
    problems = sorted(problems, key=_location_key)
    print(f'{len(problems)} problem(s) found; nothing was written:',
          file=sys.stderr)
    for p in problems[:PROBLEMS_SHOWN]:
        print(f'  {p}', file=sys.stderr)
    if len(problems) > PROBLEMS_SHOWN:
        print(f'  ... and {len(problems) - PROBLEMS_SHOWN} more',
              file=sys.stderr)


def _verify(out: str, name: str, refs_name: str,
            split_names: Sequence[str]) -> Dict[str, Tuple[int, int, int]]:
    """Reads the written refs back with RefCOCODataset (GRefCOCODataset for
    grefs(<by>).json), split by split; returns {split: (images, refs,
    sentences)} as the loader sees them."""
    from sera_mm.datasets import GRefCOCODataset, RefCOCODataset
    dataset = GRefCOCODataset if refs_name.startswith('grefs') else RefCOCODataset
    counts = {}
    for split in split_names:
        ds = dataset(data_root=out, ann_file=f'{name}/instances.json',
                     split_file=f'{name}/{refs_name}', split=split,
                     data_prefix=dict(img_path=f'{IMAGE_DIR}/'),
                     test_mode=True, serialize_data=False)
        infos = [ds.get_data_info(i) for i in range(len(ds))]
        counts[split] = (len({i['image_id'] for i in infos}),
                         len({i['ref_id'] for i in infos}), len(infos))
    return counts


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses the command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__.split('Examples::')[0],
        epilog='examples:' + __doc__.split('Examples::')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='input', required=True,
                           metavar='{coco,labelme}')
    coco = sub.add_parser('coco', help='COCO instances + a sentences file')
    coco.add_argument('--instances', required=True,
                      help='COCO instances JSON (images, annotations)')
    coco.add_argument('--images', required=True,
                      help="folder the images' file_name is relative to")
    coco.add_argument('--sentences', required=True,
                      help='JSON Lines or CSV: image, ann_id, sentence[, split]')
    labelme = sub.add_parser('labelme', help='a folder of LabelMe files')
    labelme.add_argument('folder', help='folder of *.json (searched '
                         'recursively), imagePath relative to each file')
    for q in (coco, labelme):
        q.add_argument('--out', required=True,
                       help='root of the written set (data_root of the config)')
        q.add_argument('--name', default='custom',
                       help='folder of the annotation files under --out')
        q.add_argument('--split-by', default='custom',
                       help="the <by> in refs(<by>).p (REFER's author of the "
                            'splits: unc, umd, google ...)')
        q.add_argument('--splits', nargs='+', default=list(DEFAULT_SPLITS),
                       metavar='NAME=RATIO',
                       help='ratios of the images drawn into each split '
                            f'(default: {" ".join(DEFAULT_SPLITS)}); images '
                            'whose sentences give a split keep it')
        q.add_argument('--seed', type=int, default=0,
                       help='seed of the split draw')
        q.add_argument('--format', choices=('auto', 'refer', 'grefer'),
                       default='auto',
                       help='refer: refs(<by>).p, one object per sentence; '
                            'grefer: grefs(<by>).json; auto: refer unless a '
                            'sentence names several objects or none')
        q.add_argument('--symlink', action='store_true',
                       help='link the photos instead of copying them')
        q.add_argument('--force', action='store_true',
                       help='replace files already in --out')
        q.add_argument('--base-config', default=DEFAULT_BASE_CONFIG,
                       help='config the printed config starts from')
        q.add_argument('--config-out', default=None,
                       help='also write the config there')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the conversion; returns the exit code (1 on any problem)."""
    args = parse_args(argv)
    if args.input == 'coco':
        found = read_coco(args.instances, args.images, args.sentences)
    else:
        found = read_labelme(args.folder)
    ratios, ratio_problems = parse_ratios(args.splits)
    found.problems.extend(ratio_problems)
    if not found.sentences and not found.problems:
        found.problem(args.sentences if args.input == 'coco' else args.folder,
                      'holds no sentence')
    used = {s.image_id for s in found.sentences}
    for photo in found.photos.values():
        if photo.image_id in used:
            error = check_photo(photo)
            if error:
                found.problem(photo.where, error)
    check_objects(found, used)
    multi = [s for s in found.sentences if len(s.ann_ids) != 1]
    grefer = args.format == 'grefer' or (args.format == 'auto' and bool(multi))
    if args.format == 'refer':
        for s in multi:
            what = 'no object' if not s.ann_ids else f'{len(s.ann_ids)} objects'
            found.problem(s.where, f'the sentence names {what}; refs(<by>).p '
                          'holds one object per sentence: use --format grefer')
    splits = plan_splits(found, ratios, args.seed) if ratios else {}
    _warn_ambiguous(found)
    refs_name = (f'grefs({args.split_by}).json' if grefer
                 else f'refs({args.split_by}).p')
    refs_path = osp.join(args.out, args.name, refs_name)
    photos = [p for p in found.photos.values() if p.image_id in used]
    left_out = [p for p in found.photos.values() if p.image_id not in used]
    if left_out:
        found.notes.append(f'{len(left_out)} image(s) have no sentence and are '
                           f'left out (not checked, not written), e.g. '
                           f'{left_out[0].where}')
    if args.config_out is not None and not osp.isfile(args.base_config):
        found.problem('--base-config', f'{args.base_config} not found')
    if found.problems:
        _print_notes(found.notes)
        _print_problems(found.problems)
        return 1

    refs = build_refs(found, splits, grefer)
    files = serialize(build_instances(found, used), refs, refs_path)
    split_names = [s for s in KNOWN_SPLITS if s in set(splits.values())]
    target = args.config_out or osp.join('configs', 'custom',
                                         f'{args.name}.py')
    config = config_text(target, args.base_config, args.out, args.name,
                         refs_name, split_names)
    if args.config_out:
        files = OrderedDict([(args.config_out, config.encode('utf-8')),
                             *files.items()])
    _print_notes(found.notes)
    problems = check_outputs(args.out, files, photos, args.symlink,
                             args.force)
    if problems:
        _print_problems(problems)
        return 1
    write_outputs(args.out, photos, files, args.symlink)
    print(f'written: {", ".join(files)} and {len(photos)} images under '
          f'{osp.join(args.out, IMAGE_DIR)}/')
    turned = sum(p.transpose for p in photos)
    if turned:
        print(f'{turned} photo(s) written upright from their EXIF orientation')
    if grefer:
        print(f'{len(multi)} sentence(s) name several objects or none: the '
              "refs are in gRefCOCO's layout (ann_id a list, [-1] for no "
              'object), read by GRefCOCODataset')
    counts = _verify(args.out, args.name, refs_name, split_names)
    for split, (n_img, n_ref, n_sent) in counts.items():
        print(f'  {split:6s} images {n_img:6d}  refs {n_ref:6d}  '
              f'sentences {n_sent:6d}')
    if not args.config_out:
        print(f'a config that trains on it (save it as {target}):')
    print(config, end='')
    return 0


def _warn_ambiguous(found: Collected) -> None:
    """Notes sentences that name different objects in the same image (the
    model is then taught two answers to one question)."""
    seen: Dict[Tuple[Any, str], Sentence] = {}
    for s in found.sentences:
        key = (s.image_id, ' '.join(_words(s.text)))
        first = seen.setdefault(key, s)
        if first.ann_ids != s.ann_ids:
            found.notes.append(
                f'{s.where}: the sentence {s.text!r} also names another '
                f'object of the same image at {first.where}: tell them apart '
                'in the sentences (or, in LabelMe, give one object one '
                'group_id)')


if __name__ == '__main__':
    sys.exit(main())
