"""A small REFER-format referring segmentation set, generated from a seed.

:func:`generate_synthetic_refer` draws scenes of 3 to 6 coloured shapes
(circle, square, triangle) on noisy backgrounds and writes them in RefCOCO's
layout::

    <out_dir>/
      images/SYN_<image_id>.jpg          the pictures (like coco/train2014/)
      refsyn/instances.json              COCO images / annotations / categories
      refsyn/refs(unc).p                 REFER refs, splits train/val/testA/testB
      refsyn/scenes.json                 every object's shape, colour, bbox and
                                         area, for tests
      refsyn+/...                        the same for flavour 'no_position'
      grefsyn/instances.json, grefs(unc).json, scenes.json
                                         ref_format 'grefcoco' (grefsyn+/ for
                                         'no_position'): gRefCOCO's layout
      synthetic_meta.json                the parameters of the set

Flavour ``'full'`` (``refsyn``) has attribute ("the red circle"), absolute
position ("the leftmost square", "the green shape at the top") and
comparison ("the bigger triangle") sentences; ``'no_position'``
(``refsyn+``, like RefCOCO+) has no absolute-position words. The flavours
share the images (scenes depend on the seed only), so a second call with
the other flavour adds its folder and reuses ``images/``.

Every sentence names exactly one object of its image (its descriptor and
relation, with a visible margin, leave only the target). Each image has a
palette of 2 or 3 colours, so most targets share their colour or shape with
another object and a model that reads half of the sentence fails. Masks are
stored as polygons, compressed and uncompressed RLE, all decoding to the
painted pixels. Splits are by image, as in RefCOCO's unc split; testA and
testB are two more held-out sets of the same distribution.

With ``ref_format='grefcoco'`` the refs are gRefCOCO's (``ann_id`` a list,
``[-1]`` for no target, written as ``grefs(unc).json``) and besides the
one-object sentences above a ref may name several objects ("all the red
shapes", "the two circles", "the red circle and the blue square") or none
("the green square" in a scene without one); :data:`TARGET_WEIGHTS` sets
their shares (about gRefCOCO's: a third multi-target, a sixth none).
"""
import itertools
import json
import os
import os.path as osp
import pickle
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sera_mm.utils.atomic import atomic_write_bytes, atomic_write_json

SPLITS = ('train', 'val', 'testA', 'testB')
SPLIT_CODES = {'train': 1, 'val': 2, 'testA': 3, 'testB': 4}
FLAVOURS = {'full': 'refsyn', 'no_position': 'refsyn+'}
REF_FORMATS = ('refer', 'grefcoco')
#: ``ref_format='grefcoco'``: probabilities that a ref of an image names one
#: object, several or none (gRefCOCO: ~30% multi-target, ~15% no target)
TARGET_WEIGHTS = dict(single=0.47, multi=0.33, none=0.2)
NUMBER_WORDS = ('two', 'three', 'four', 'five', 'six')
IMAGE_DIR = 'images'
META_FILE = 'synthetic_meta.json'
FORMAT_VERSION = 1
#: JSON separators of the written annotation files (no spaces: RefCOCO-scale
#: sets are large).
COMPACT = (',', ':')

COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (215, 40, 40),
    'green': (40, 165, 60),
    'blue': (40, 80, 215),
    'yellow': (235, 205, 35),
    'purple': (145, 60, 190),
}
SHAPES = ('circle', 'square', 'triangle')
CATEGORIES = [dict(id=i + 1, name=s, supercategory='shape')
              for i, s in enumerate(SHAPES)]
POSITION_WORDS = ('left', 'right', 'top', 'bottom', 'leftmost', 'rightmost',
                  'topmost', 'bottommost')

#: The embedded demo (CPU training): images per split.
DEFAULT_NUM_IMAGES = dict(train=1500, val=150, testA=150, testB=150)
#: RefCOCO's size (19,994 images, 50,000 refs, 142,209 sentences), for the
#: index-building benchmark with ``write_images=False``.
REFCOCO_SCALE = dict(train=16994, val=1500, testA=750, testB=750)
REFCOCO_SENTENCE_WEIGHTS = (0.04, 0.08, 0.88)

# Geometry of a scene: object side as a fraction of the shorter image side;
# margins that make position and size relations visible at a glance.
SIDE_RANGE = (0.15, 0.45)
POSITION_MARGIN = 0.08  # of the image width (x) or height (y)
AREA_RATIO = 1.5  # 'bigger' needs at least this area ratio to every rival
GAP = 3  # pixels between the bounding boxes of two objects


# --------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------
def _shape_polygon(shape: str, cx: float, cy: float,
                   side: float) -> List[float]:
    """Returns the polygon [x1, y1, x2, y2, ...] of a shape in pixels."""
    r = side / 2
    if shape == 'square':
        pts = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r),
               (cx - r, cy + r)]
    elif shape == 'triangle':
        pts = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif shape == 'circle':
        angles = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
    else:
        raise ValueError(f'unknown shape {shape!r}')
    return [round(float(v), 2) for p in pts for v in p]


def _sample_scene(rng: np.random.Generator,
                  size_range: Tuple[int, int]) -> dict:
    """Draws one scene: image size and 3 to 6 non-overlapping objects.

    Returns:
        dict(width, height, objects=[dict(shape, colour, bbox, polygon)]),
        bbox = [x0, y0, x1, y1] in pixels.
    """
    lo, hi = size_range
    while True:
        w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        if abs(w - h) >= max(8, (hi - lo) // 8) or hi - lo < 16:
            break
    short = min(w, h)
    # str(): numpy strings would pickle as numpy globals.
    palette = [str(c) for c in rng.choice(
        list(COLOURS), size=int(rng.integers(2, 4)), replace=False)]
    for _ in range(100):
        n = int(rng.integers(3, 7))
        boxes: List[Tuple[float, float, float, float]] = []
        objects = []
        for _k in range(n):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = palette[int(rng.integers(len(palette)))]
            for attempt in range(40):
                top = SIDE_RANGE[1] - (SIDE_RANGE[1] - SIDE_RANGE[0]) * attempt / 40
                side = float(rng.uniform(SIDE_RANGE[0], top)) * short
                cx = float(rng.uniform(side / 2 + 1, w - side / 2 - 1))
                cy = float(rng.uniform(side / 2 + 1, h - side / 2 - 1))
                box = (cx - side / 2, cy - side / 2, cx + side / 2,
                       cy + side / 2)
                if all(box[0] > b[2] + GAP or box[2] < b[0] - GAP
                       or box[1] > b[3] + GAP or box[3] < b[1] - GAP
                       for b in boxes):
                    boxes.append(box)
                    objects.append(dict(
                        shape=shape, colour=colour,
                        bbox=[round(v, 2) for v in box],
                        polygon=_shape_polygon(shape, cx, cy, side)))
                    break
        if len(objects) >= 3:
            return dict(width=w, height=h, objects=objects)
    raise RuntimeError('could not place 3 objects; image_size_range too small?')


# --------------------------------------------------------------------------
# sentences
# --------------------------------------------------------------------------
def _descriptor_phrase(colour: Optional[str], shape: Optional[str]) -> str:
    if colour and shape:
        return f'{colour} {shape}'
    if shape:
        return shape
    if colour:
        return f'{colour} shape'
    return 'shape'


def _matching(objects: Sequence[dict], colour: Optional[str],
              shape: Optional[str]) -> List[int]:
    return [i for i, o in enumerate(objects)
            if (colour is None or o['colour'] == colour)
            and (shape is None or o['shape'] == shape)]


def _extreme(objects: Sequence[dict], t: int, group: Sequence[int],
             axis: int, sign: int, margin: float) -> bool:
    """True if object t is the most extreme of group along axis.

    sign=-1: smallest coordinate (left/top); +1: largest (right/bottom). The
    centre must lead every rival by ``margin`` and the near edge must lead too,
    so that centre and edge readings of "leftmost" agree.
    """
    bt = objects[t]['bbox']
    ct = (bt[axis] + bt[axis + 2]) / 2
    edge_t = bt[axis] if sign < 0 else bt[axis + 2]
    for i in group:
        if i == t:
            continue
        b = objects[i]['bbox']
        c = (b[axis] + b[axis + 2]) / 2
        edge = b[axis] if sign < 0 else b[axis + 2]
        if sign * (ct - c) < margin or sign * (edge_t - edge) <= 0:
            return False
    return True


def candidate_sentences(scene: dict, target: int,
                        with_position: bool = True) -> List[Tuple[str, str]]:
    """Lists every sentence that names object ``target`` of ``scene`` alone.

    Args:
        scene: a scene as written to scenes.json (objects with shape, colour,
            bbox, area).
        target: index of the object in ``scene['objects']``.
        with_position: include the absolute-position family.

    Returns:
        list of (family, sentence), family in 'attribute' | 'position' |
        'comparison'; deterministic order.
    """
    objects = scene['objects']
    tgt = objects[target]
    out: List[Tuple[str, str]] = []
    descriptors = [(tgt['colour'], tgt['shape']), (None, tgt['shape']),
                   (tgt['colour'], None), (None, None)]
    for colour, shape in descriptors:
        group = _matching(objects, colour, shape)
        phrase = _descriptor_phrase(colour, shape)
        if len(group) == 1 and (colour or shape):
            out.append(('attribute', f'the {phrase}'))
            if colour and shape:
                out.append(('attribute', f'the {shape} that is {colour}'))
            continue
        if len(group) < 2:
            continue
        if with_position:
            xm = POSITION_MARGIN * scene['width']
            ym = POSITION_MARGIN * scene['height']
            for axis, sign, most, pair in (
                    (0, -1, 'leftmost', 'on the left'),
                    (0, 1, 'rightmost', 'on the right'),
                    (1, -1, 'topmost', 'at the top'),
                    (1, 1, 'bottommost', 'at the bottom')):
                if _extreme(objects, target, group, axis, sign,
                            xm if axis == 0 else ym):
                    out.append(('position', f'the {most} {phrase}'))
                    out.append(('position', f'the {phrase} {pair}'))
        area_t = tgt['area']
        rivals = [objects[i]['area'] for i in group if i != target]
        two = len(group) == 2
        if all(area_t >= AREA_RATIO * a for a in rivals):
            out.append(('comparison',
                        f'the {"bigger" if two else "biggest"} {phrase}'))
            out.append(('comparison',
                        f'the {"larger" if two else "largest"} {phrase}'))
        if all(a >= AREA_RATIO * area_t for a in rivals):
            out.append(('comparison',
                        f'the {"smaller" if two else "smallest"} {phrase}'))
    return out


def gres_candidates(scene: dict, with_position: bool = True
                    ) -> Dict[Tuple[int, ...], List[Tuple[str, str]]]:
    """Lists every sentence of the gRefCOCO grammar with the objects it names.

    Called per image by :func:`generate_synthetic_refer` with
    ``ref_format='grefcoco'``.

    Returns:
        {target set (sorted object indices, () for none): [(family,
        sentence)]}: :func:`candidate_sentences`' for one object; 'plural'
        ("the red circles", "all the shapes", "the two squares", "both
        circles") and 'conjunction' ("the red circle and the square") for
        several; 'none' (a colour, shape or both that no object has).
    """
    objects = scene['objects']
    out: Dict[Tuple[int, ...], List[Tuple[str, str]]] = {}
    names: Dict[int, str] = {}
    for k in range(len(objects)):
        for family, sent in candidate_sentences(scene, k, with_position):
            out.setdefault((k,), []).append((family, sent))
            if family == 'attribute':
                names.setdefault(k, sent)
    for colour, shape in itertools.product((None, *COLOURS), (None, *SHAPES)):
        group = tuple(_matching(objects, colour, shape))
        noun = f'{colour + " " if colour else ""}{shape or "shape"}s'
        if len(group) >= 2:
            sents = [f'the {noun}', f'all the {noun}',
                     f'the {NUMBER_WORDS[len(group) - 2]} {noun}']
            sents += [f'both {noun}'] if len(group) == 2 else []
            out.setdefault(group, []).extend(('plural', t) for t in sents)
        elif not group:
            out.setdefault((), []).append(
                ('none', f'the {_descriptor_phrase(colour, shape)}'))
    for a, b in itertools.combinations(sorted(names), 2):
        out.setdefault((a, b), []).append(
            ('conjunction', f'{names[a]} and {names[b]}'))
    return out


def _gres_targets(rng: np.random.Generator, scene: dict, with_position: bool,
                  n_refs: int, target_weights: Dict[str, float]
                  ) -> List[Tuple[Tuple[int, ...], List[Tuple[str, str]]]]:
    """Draws up to ``n_refs`` distinct target sets of an image, each of the
    kind single / multi / none by ``target_weights`` among the kinds left;
    returns [(target set, its candidate sentences)]."""
    cands = gres_candidates(scene, with_position)
    pools = dict(single=[g for g in cands if len(g) == 1],
                 multi=[g for g in cands if len(g) > 1],
                 none=[g for g in cands if not g])
    picked = []
    for _ in range(n_refs):
        kinds = [k for k in TARGET_WEIGHTS if pools[k] and target_weights[k] > 0]
        if not kinds:
            break
        p = np.array([target_weights[k] for k in kinds], dtype=float)
        pool = pools[kinds[int(rng.choice(len(kinds), p=p / p.sum()))]]
        group = pool.pop(int(rng.integers(len(pool))))
        picked.append((group, cands[group]))
    return picked


def _sentence_dicts(texts: Sequence[str], first_id: int) -> List[dict]:
    """REFER's sentence dicts of ``texts``, numbered from ``first_id``."""
    return [dict(sent_id=first_id + k, sent=t, raw=t[0].upper() + t[1:],
                 tokens=t.split()) for k, t in enumerate(texts)]


def _pick_sentences(rng: np.random.Generator,
                    candidates: List[Tuple[str, str]], n: int,
                    family_weights: Dict[str, float]) -> List[str]:
    """Draws up to n distinct sentences: a family by weight, then a sentence."""
    pool = {f: [s for g, s in candidates if g == f] for f in family_weights}
    chosen: List[str] = []
    while len(chosen) < n:
        fams = [f for f in family_weights if pool[f] and family_weights[f] > 0]
        if not fams:
            break
        p = np.array([family_weights[f] for f in fams], dtype=float)
        fam = fams[int(rng.choice(len(fams), p=p / p.sum()))]
        sent = pool[fam].pop(int(rng.integers(len(pool[fam]))))
        chosen.append(sent)
    return chosen


# --------------------------------------------------------------------------
# masks and pictures
# --------------------------------------------------------------------------
def _uncompressed_counts(mask: np.ndarray) -> List[int]:
    """COCO's uncompressed RLE counts of a binary mask (column-major runs,
    the first run counts zeros)."""
    flat = mask.flatten(order='F')
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] else counts


def _render(rng: np.random.Generator, scene: dict,
            masks: List[np.ndarray]) -> np.ndarray:
    """Paints the scene: noisy background with a gradient, noisy shapes.

    Returns:
        H x W x 3 uint8 RGB image.
    """
    h, w = scene['height'], scene['width']
    base = rng.uniform(70, 190, size=3)
    base = base.mean() + 0.35 * (base - base.mean())  # muted background
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None]
    img = base[None, None] + 40 * (ramp - 0.5) \
        + rng.normal(0, 12, size=(h, w, 3))
    for obj, mask in zip(scene['objects'], masks):
        colour = np.array(COLOURS[obj['colour']], dtype=np.float32) \
            + rng.uniform(-15, 15)
        m = mask.astype(bool)
        img[m] = colour + rng.normal(0, 8, size=(int(m.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------
def _image_params(num_images: Dict[str, int], seed: int,
                  size_range: Tuple[int, int], image_format: str) -> dict:
    return dict(version=FORMAT_VERSION, seed=int(seed),
                num_images={s: int(num_images.get(s, 0)) for s in SPLITS},
                image_size_range=[int(v) for v in size_range],
                image_format=image_format)


def _check_existing(out_dir: str, image_params: dict, force: bool) -> dict:
    """Reads the meta of an existing set; refuses a different one.

    Returns:
        the existing meta, or a fresh one when there is none (or on force).
    Raises:
        FileExistsError: ``out_dir`` holds another set (or unknown files) and
            ``force`` is False.
    """
    meta_path = osp.join(out_dir, META_FILE)
    fresh = dict(image_params=image_params, images_written=False, flavours={})
    if osp.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get('image_params') == image_params:
            return meta
        if not force:
            raise FileExistsError(
                f'{out_dir} holds a different synthetic set '
                f'({meta.get("image_params")} vs {image_params}); pass '
                'force=True (--force) to replace it')
        for key in meta.get('flavours', {}):
            shutil.rmtree(osp.join(out_dir, FLAVOURS.get(key, key)),
                          ignore_errors=True)
        shutil.rmtree(osp.join(out_dir, IMAGE_DIR), ignore_errors=True)
        return fresh
    if osp.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise FileExistsError(
            f'{out_dir} is not empty and holds no {META_FILE}; pass force=True '
            '(--force) to write the synthetic set there anyway')
    return fresh


def generate_synthetic_refer(
        out_dir: str,
        num_images: Optional[Dict[str, int]] = None,
        seed: int = 0,
        flavour: str = 'full',
        image_size_range: Tuple[int, int] = (96, 192),
        write_images: bool = True,
        image_format: str = 'jpg',
        family_weights: Optional[Dict[str, float]] = None,
        sentence_count_weights: Sequence[float] = (0.2, 0.3, 0.5),
        refs_per_image: Tuple[int, int] = (2, 3),
        force: bool = False,
        progress: bool = False,
        ref_format: str = 'refer',
        target_weights: Optional[Dict[str, float]] = None) -> dict:
    """Writes a synthetic REFER-format set into ``out_dir`` (see module doc).

    Deterministic: the same arguments give byte-identical files. Calling it
    again with the same arguments does nothing; with other image parameters
    it raises unless ``force``. Files are written atomically (temp name, then
    rename); ``synthetic_meta.json`` is written last and marks completion.

    Args:
        out_dir: root of the set (the ``data_root`` of the dataset config).
        num_images: images per split, keys among train/val/testA/testB.
            Defaults to :data:`DEFAULT_NUM_IMAGES`.
        seed: seed of everything.
        flavour: 'full' (folder refsyn) or 'no_position' (folder refsyn+).
        image_size_range: (min, max) of image width and height in pixels;
            width and height are drawn apart so images are not square.
        write_images: False writes annotations only (benchmarks at RefCOCO
            scale, see :data:`REFCOCO_SCALE`).
        image_format: 'jpg' or 'png'.
        family_weights: weight of each sentence family when picking the
            sentences of a referent. Defaults to attribute 0.5, position 0.3,
            comparison 0.2 (position is dropped for 'no_position').
        sentence_count_weights: probabilities of 1, 2, 3 sentences per
            referent (fewer when fewer sentences fit the referent).
        refs_per_image: (min, max) referents per image, among the objects
            that some sentence names alone.
        force: replace a different set found in ``out_dir``.
        progress: show a tqdm progress bar.
        ref_format: 'refer' (``refs(unc).p``, one object per ref) or
            'grefcoco' (``grefs(unc).json`` in folder ``g<refsyn>``: refs of
            one object, several or none).
        target_weights: 'grefcoco' only: weights of single / multi / none
            refs. Defaults to :data:`TARGET_WEIGHTS`.

    Returns:
        dict(root, ann_file, split_file, img_prefix, skipped, counts), counts
        ``{split: dict(images, refs, sentences)}`` (for 'grefcoco' also
        ``multi`` and ``no_target``, refs of several objects and of none);
        paths relative to root.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f'flavour must be one of {list(FLAVOURS)}, got {flavour!r}')
    if image_format not in ('jpg', 'png'):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    num_images = dict(DEFAULT_NUM_IMAGES if num_images is None else num_images)
    unknown = set(num_images) - set(SPLITS)
    if unknown:
        raise ValueError(f'num_images has unknown splits {sorted(unknown)}; '
                         f'use {list(SPLITS)}')
    weights = dict(attribute=0.5, position=0.3, comparison=0.2)
    weights.update(family_weights or {})
    with_position = flavour == 'full'
    if not with_position:
        weights['position'] = 0.0
    p_count = np.asarray(sentence_count_weights, dtype=float)
    if p_count.shape != (3,) or p_count.min() < 0 or p_count.sum() <= 0:
        raise ValueError('sentence_count_weights must be 3 non-negative weights '
                         f'(1, 2, 3 sentences), got {sentence_count_weights}')
    p_count = p_count / p_count.sum()
    if ref_format not in REF_FORMATS:
        raise ValueError(f'ref_format must be one of {list(REF_FORMATS)}, '
                         f'got {ref_format!r}')
    gres = ref_format == 'grefcoco'
    targets = dict(TARGET_WEIGHTS, **(target_weights or {}))
    if set(targets) != set(TARGET_WEIGHTS) or min(targets.values()) < 0:
        raise ValueError('target_weights must give non-negative weights of '
                         f'{list(TARGET_WEIGHTS)}, got {target_weights}')

    ann_dir = ('g' if gres else '') + FLAVOURS[flavour]
    # meta key: the flavour for REFER sets (as before), the folder for gRefCOCO
    set_key = ann_dir if gres else flavour
    result = dict(root=out_dir, ann_file=f'{ann_dir}/instances.json',
                  split_file=f'{ann_dir}/' + ('grefs(unc).json' if gres
                                              else 'refs(unc).p'),
                  img_prefix=f'{IMAGE_DIR}/', skipped=False)
    image_params = _image_params(num_images, seed, image_size_range,
                                 image_format)
    flavour_params = dict(family_weights=weights,
                          sentence_count_weights=p_count.round(6).tolist(),
                          refs_per_image=list(refs_per_image))
    if gres:
        flavour_params['target_weights'] = targets
    meta = _check_existing(out_dir, image_params, force)
    need_images = write_images and not meta['images_written']
    if meta['flavours'].get(set_key, {}).get('params') == flavour_params \
            and not need_images and not force:
        result.update(skipped=True, counts=meta['flavours'][set_key]['counts'])
        return result

    from pycocotools import mask as mask_utils  # heavy import, only here

    os.makedirs(osp.join(out_dir, ann_dir), exist_ok=True)
    if need_images:
        os.makedirs(osp.join(out_dir, IMAGE_DIR), exist_ok=True)
    flavour_code = list(FLAVOURS).index(flavour)
    jobs = [(split, i) for split in SPLITS
            for i in range(num_images.get(split, 0))]
    if progress:
        from tqdm import tqdm
        jobs = tqdm(jobs, desc=f'synthetic {flavour}', unit='img')

    images, annotations, refs, scenes = [], [], [], {}
    counts = {s: dict(images=0, refs=0, sentences=0,
                      **(dict(multi=0, no_target=0) if gres else {}))
              for s in SPLITS}
    next_ref_id, next_sent_id = 1, 1
    for split, i in jobs:
        code = SPLIT_CODES[split]
        scene_rng = np.random.default_rng([seed, code, i, 0])
        text_rng = np.random.default_rng(
            [seed, code, i, 1 + flavour_code + 2 * gres])
        scene = _sample_scene(scene_rng, image_size_range)
        h, w = scene['height'], scene['width']
        image_id = code * 1_000_000 + i + 1
        file_name = f'SYN_{image_id:012d}.{image_format}'
        images.append(dict(id=image_id, file_name=file_name, height=h,
                           width=w))
        masks = []
        for k, obj in enumerate(scene['objects']):
            obj['ann_id'] = image_id * 10 + k
            rle = mask_utils.merge(
                mask_utils.frPyObjects([obj['polygon']], h, w))
            obj['area'] = int(mask_utils.area(rle))
            kind = scene_rng.choice(3, p=(0.6, 0.25, 0.15))
            mask = mask_utils.decode(rle) if (need_images or kind == 2) \
                else None
            if kind == 0:
                seg = [obj['polygon']]
            elif kind == 1:
                seg = dict(size=[h, w], counts=rle['counts'].decode('ascii'))
            else:
                seg = dict(size=[h, w], counts=_uncompressed_counts(mask))
            masks.append(mask)
            x0, y0, x1, y1 = obj['bbox']
            annotations.append(dict(
                id=obj['ann_id'], image_id=image_id,
                category_id=SHAPES.index(obj['shape']) + 1, segmentation=seg,
                area=obj['area'], bbox=[x0, y0, x1 - x0, y1 - y0],
                iscrowd=0))
        if need_images:
            img = _render(scene_rng, scene, masks)
            _write_image(osp.join(out_dir, IMAGE_DIR, file_name), img,
                         image_format)
        scenes[str(image_id)] = dict(
            width=w, height=h,
            objects=[{k: o[k] for k in ('ann_id', 'shape', 'colour', 'bbox',
                                        'area')} for o in scene['objects']])
        counts[split]['images'] += 1
        if gres:
            n_refs = int(text_rng.integers(refs_per_image[0],
                                           refs_per_image[1] + 1))
            for group, cand in _gres_targets(text_rng, scene, with_position,
                                             n_refs, targets):
                n_sent = 1 + int(text_rng.choice(3, p=p_count))
                sentences = _sentence_dicts(_pick_sentences(
                    text_rng, cand, n_sent, dict(
                        weights, plural=0.7, conjunction=0.3, none=1.0)),
                    next_sent_id)
                next_sent_id += len(sentences)
                objs = [scene['objects'][k] for k in group]
                refs.append(dict(
                    ref_id=next_ref_id, image_id=image_id, split=split,
                    ann_id=[o['ann_id'] for o in objs] or [-1],
                    category_id=[SHAPES.index(o['shape']) + 1
                                 for o in objs] or [-1],
                    no_target=not objs, sentences=sentences,
                    sent_ids=[s['sent_id'] for s in sentences],
                    file_name=file_name))
                next_ref_id += 1
                counts[split]['refs'] += 1
                counts[split]['sentences'] += len(sentences)
                counts[split]['multi'] += len(objs) > 1
                counts[split]['no_target'] += not objs
            continue

        cands = [(k, candidate_sentences(scene, k, with_position))
                 for k in range(len(scene['objects']))]
        cands = [(k, c) for k, c in cands if c]
        if not cands:
            continue
        n_refs = min(len(cands), int(text_rng.integers(
            refs_per_image[0], refs_per_image[1] + 1)))
        # Prefer targets that share colour or shape with another object.
        share = np.array([1.0 + 2.0 * _shares_attribute(scene['objects'], k)
                          for k, _ in cands])
        picked = sorted(text_rng.choice(len(cands), size=n_refs, replace=False,
                                        p=share / share.sum()).tolist())
        for j in picked:
            k, cand = cands[j]
            obj = scene['objects'][k]
            n_sent = 1 + int(text_rng.choice(3, p=p_count))
            sentences = _sentence_dicts(
                _pick_sentences(text_rng, cand, n_sent, weights), next_sent_id)
            next_sent_id += len(sentences)
            refs.append(dict(
                ref_id=next_ref_id, ann_id=obj['ann_id'], image_id=image_id,
                split=split, sentences=sentences,
                sent_ids=[s['sent_id'] for s in sentences],
                category_id=SHAPES.index(obj['shape']) + 1,
                file_name=f'SYN_{image_id:012d}_{obj["ann_id"]}.{image_format}'))
            next_ref_id += 1
            counts[split]['refs'] += 1
            counts[split]['sentences'] += len(sentences)

    ann_root = osp.join(out_dir, ann_dir)
    atomic_write_json(osp.join(ann_root, 'instances.json'),
                      dict(info=dict(description=f'sera_mm synthetic {flavour}',
                                     seed=seed),
                           images=images, annotations=annotations,
                           categories=CATEGORIES), separators=COMPACT)
    if gres:
        atomic_write_json(osp.join(ann_root, 'grefs(unc).json'), refs,
                          separators=COMPACT)
    else:
        # Protocol 2: the protocol of the original REFER files.
        atomic_write_bytes(osp.join(ann_root, 'refs(unc).p'),
                           pickle.dumps(refs, protocol=2))
    atomic_write_json(osp.join(ann_root, 'scenes.json'), scenes, separators=COMPACT)
    meta['images_written'] = meta['images_written'] or need_images
    meta['flavours'][set_key] = dict(params=flavour_params, counts=counts)
    atomic_write_json(osp.join(out_dir, META_FILE), meta, separators=COMPACT)
    result['counts'] = counts
    return result


def _shares_attribute(objects: Sequence[dict], k: int) -> bool:
    return any(j != k and (o['colour'] == objects[k]['colour']
                           or o['shape'] == objects[k]['shape'])
               for j, o in enumerate(objects))


def _write_image(path: str, img: np.ndarray, image_format: str) -> None:
    """Writes an RGB uint8 image atomically (PIL: no cv2 channel games)."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    if image_format == 'jpg':
        Image.fromarray(img).save(buf, format='JPEG', quality=95)
    else:
        Image.fromarray(img).save(buf, format='PNG')
    atomic_write_bytes(path, buf.getvalue())
