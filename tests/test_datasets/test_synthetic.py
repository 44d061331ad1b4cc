"""The synthetic generator: determinism, unambiguous sentences, files."""
import collections
import filecmp
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sera_mm.datasets import RefCOCODataset, load_refer_pickle
from sera_mm.datasets.synthetic import generate_synthetic_refer

COLOURS = {'red', 'green', 'blue', 'yellow', 'purple'}
SHAPES = {'circle', 'square', 'triangle'}
POSITION = {'leftmost': (0, -1), 'rightmost': (0, 1), 'topmost': (1, -1),
            'bottommost': (1, 1)}
PAIR = {('on', 'the', 'left'): 'leftmost', ('on', 'the', 'right'): 'rightmost',
        ('at', 'the', 'top'): 'topmost', ('at', 'the', 'bottom'): 'bottommost'}
SIZE = {'bigger': 1, 'larger': 1, 'biggest': 1, 'largest': 1, 'smaller': -1,
        'smallest': -1}
COMPARATIVE = {'bigger', 'larger', 'smaller'}
SMALL = dict(train=10, val=3, testA=3, testB=3)


def _load(root, ann_dir='refsyn'):
    with open(os.path.join(root, ann_dir, 'instances.json')) as f:
        inst = json.load(f)
    refs = load_refer_pickle(os.path.join(root, ann_dir, 'refs(unc).p'))
    with open(os.path.join(root, ann_dir, 'scenes.json')) as f:
        scenes = json.load(f)
    return inst, refs, scenes


def _parse(sent):
    """Reads a sentence of the generator's grammar, written apart from it.

    Returns (colour or None, shape or None, relation or None)."""
    words = sent.split()
    assert words[0] == 'the', sent
    words = words[1:]
    relation = None
    if len(words) == 4 and words[1:3] == ['that', 'is']:
        return words[3], words[0], None
    if words[0] in POSITION or words[0] in SIZE:
        relation, words = words[0], words[1:]
    elif tuple(words[-3:]) in PAIR:
        relation, words = PAIR[tuple(words[-3:])], words[:-3]
    colour = words[0] if words[0] in COLOURS else None
    rest = words[1:] if colour else words
    assert len(rest) == 1, sent
    shape = rest[0] if rest[0] in SHAPES else None
    assert shape or rest[0] == 'shape', sent
    return colour, shape, relation


def _resolve(scene, sent):
    """Returns the ann_ids of the objects the sentence can mean."""
    colour, shape, relation = _parse(sent)
    objs = [o for o in scene['objects']
            if colour in (None, o['colour']) and shape in (None, o['shape'])]
    if relation is None:
        return [o['ann_id'] for o in objs]
    assert len(objs) >= 2, f'relation {relation!r} among {len(objs)}: {sent}'
    if relation in COMPARATIVE:
        assert len(objs) == 2, sent
    if relation in POSITION:
        axis, sign = POSITION[relation]
        size = scene['width'] if axis == 0 else scene['height']
        centre = [sign * (o['bbox'][axis] + o['bbox'][axis + 2]) / 2
                  for o in objs]
        best = max(centre)
        # the winner leads every other by a visible margin (5% of the side)
        winners = [o for o, c in zip(objs, centre) if c > best - 0.05 * size]
        return [o['ann_id'] for o in winners]
    sign = SIZE[relation]
    area = [o['area'] ** sign for o in objs]
    best = max(area)
    # the winner's area is at least 1.3 times every other's
    return [o['ann_id'] for o, a in zip(objs, area) if a * 1.3 > best]


def _family(sent):
    relation = _parse(sent)[2]
    if relation is None:
        return 'attribute'
    return 'comparison' if relation in SIZE else 'position'


@pytest.mark.parametrize('ann_dir', ['refsyn', 'refsyn+'])
def test_every_sentence_names_exactly_its_referent(synthetic_refer, ann_dir):
    inst, refs, scenes = _load(synthetic_refer, ann_dir)
    assert len(refs) > 20
    families = set()
    for ref in refs:
        scene = scenes[str(ref['image_id'])]
        assert 1 <= len(ref['sentences']) <= 3
        texts = [s['sent'] for s in ref['sentences']]
        assert len(set(texts)) == len(texts)
        for s in ref['sentences']:
            assert _resolve(scene, s['sent']) == [ref['ann_id']], \
                (s['sent'], scene)
            assert s['tokens'] == s['sent'].split()
            families.add(_family(s['sent']))
        if ann_dir == 'refsyn+':
            assert not any(w in POSITION or w in {'left', 'right', 'top',
                                                  'bottom'}
                           for t in texts for w in t.split()), texts
    want = {'attribute', 'comparison'} | ({'position'} if ann_dir == 'refsyn'
                                          else set())
    assert families == want


def test_targets_mostly_share_colour_or_shape(synthetic_refer):
    _, refs, scenes = _load(synthetic_refer)
    shared = 0
    for ref in refs:
        objs = scenes[str(ref['image_id'])]['objects']
        t = [o for o in objs if o['ann_id'] == ref['ann_id']][0]
        shared += any(o is not t and (o['colour'] == t['colour']
                                      or o['shape'] == t['shape'])
                      for o in objs)
    assert shared / len(refs) >= 0.7


def test_masks_match_the_scene_and_use_every_encoding(synthetic_refer):
    inst, refs, scenes = _load(synthetic_refer)
    images = {i['id']: i for i in inst['images']}
    kinds = set()
    for ann in inst['annotations']:
        img = images[ann['image_id']]
        h, w = img['height'], img['width']
        seg = ann['segmentation']
        if isinstance(seg, list):
            kinds.add('polygon')
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg['counts'], list):
            kinds.add('uncompressed')
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            kinds.add('compressed')
            rle = seg
        mask = mask_utils.decode(rle)
        obj = [o for o in scenes[str(ann['image_id'])]['objects']
               if o['ann_id'] == ann['id']][0]
        assert mask.sum() == obj['area'] == ann['area']
        x0, y0, x1, y1 = obj['bbox']
        ys, xs = np.nonzero(mask)
        assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1
        assert y0 - 1 <= ys.min() and ys.max() <= y1 + 1
        side = min(h, w)
        assert 0.15 * side - 1 <= x1 - x0 <= 0.45 * side + 1
    assert kinds == {'polygon', 'uncompressed', 'compressed'}


def test_images_and_splits(synthetic_refer):
    from PIL import Image
    inst, refs, scenes = _load(synthetic_refer)
    split_of = {}
    for ref in refs:
        assert split_of.setdefault(ref['image_id'], ref['split']) == \
            ref['split']  # splits are by image
        assert ref['file_name'].endswith(f"_{ref['ann_id']}.jpg")
    assert set(split_of.values()) == {'train', 'val', 'testA', 'testB'}
    non_square = 0
    for img in inst['images']:
        assert 96 <= img['height'] <= 192 and 96 <= img['width'] <= 192
        non_square += img['height'] != img['width']
        assert 3 <= len(scenes[str(img['id'])]['objects']) <= 6
        with Image.open(os.path.join(synthetic_refer, 'images',
                                     img['file_name'])) as im:
            assert im.size == (img['width'], img['height'])
    assert non_square == len(inst['images'])


def test_painted_pixels_have_the_named_colour(synthetic_refer):
    from PIL import Image
    from sera_mm.datasets.synthetic import COLOURS as PALETTE
    inst, _, scenes = _load(synthetic_refer)
    for img in inst['images'][:4]:
        pic = np.asarray(Image.open(os.path.join(
            synthetic_refer, 'images', img['file_name'])).convert('RGB'))
        for obj in scenes[str(img['id'])]['objects']:
            x0, y0, x1, y1 = obj['bbox']
            cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
            if obj['shape'] == 'triangle':
                cy = int(y0 + 0.7 * (y1 - y0))
            patch = pic[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3).mean(0)
            dist = {n: np.abs(patch - c).sum() for n, c in PALETTE.items()}
            assert min(dist, key=dist.get) == obj['colour']


def test_deterministic_and_seed_dependent(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    generate_synthetic_refer(a, num_images=SMALL, seed=3)
    generate_synthetic_refer(b, num_images=SMALL, seed=3)
    generate_synthetic_refer(c, num_images=SMALL, seed=4)
    for name in ('refsyn/instances.json', 'refsyn/refs(unc).p',
                 'refsyn/scenes.json'):
        assert filecmp.cmp(os.path.join(a, name), os.path.join(b, name),
                           shallow=False)
        assert not filecmp.cmp(os.path.join(a, name), os.path.join(c, name),
                               shallow=False)
    files = sorted(os.listdir(os.path.join(a, 'images')))
    assert files == sorted(os.listdir(os.path.join(b, 'images')))
    assert all(filecmp.cmp(os.path.join(a, 'images', f),
                           os.path.join(b, 'images', f), shallow=False)
               for f in files)


def test_rerun_skips_and_refuses_a_different_set(tmp_path):
    root = str(tmp_path / 'set')
    first = generate_synthetic_refer(root, num_images=SMALL, seed=0)
    assert not first['skipped']
    stamp = os.path.getmtime(os.path.join(root, 'refsyn', 'instances.json'))
    again = generate_synthetic_refer(root, num_images=SMALL, seed=0)
    assert again['skipped'] and again['counts'] == first['counts']
    assert os.path.getmtime(
        os.path.join(root, 'refsyn', 'instances.json')) == stamp
    with pytest.raises(FileExistsError, match='force'):
        generate_synthetic_refer(root, num_images=SMALL, seed=1)
    forced = generate_synthetic_refer(root, num_images=SMALL, seed=1,
                                      force=True)
    assert not forced['skipped']
    assert not [f for f in os.listdir(os.path.join(root, 'refsyn'))
                if '.tmp' in f]
    other = str(tmp_path / 'other')
    os.makedirs(other)
    open(os.path.join(other, 'notes.txt'), 'w').close()
    with pytest.raises(FileExistsError, match='not empty'):
        generate_synthetic_refer(other, num_images=SMALL)


def test_without_images_writes_annotations_only(tmp_path):
    root = str(tmp_path / 'noimg')
    res = generate_synthetic_refer(root, num_images=SMALL, seed=0,
                                   write_images=False)
    assert not os.path.exists(os.path.join(root, 'images'))
    with_img = str(tmp_path / 'img')
    generate_synthetic_refer(with_img, num_images=SMALL, seed=0)
    # annotations do not depend on whether images are written
    assert filecmp.cmp(os.path.join(root, 'refsyn', 'refs(unc).p'),
                       os.path.join(with_img, 'refsyn', 'refs(unc).p'),
                       shallow=False)
    ds = RefCOCODataset(data_root=root, ann_file=res['ann_file'],
                        split_file=res['split_file'],
                        data_prefix=dict(img_path=res['img_prefix']),
                        split='val', test_mode=True, check_images=False)
    assert len(ds) == res['counts']['val']['sentences']


@pytest.mark.parametrize('split', ['train', 'val', 'testA', 'testB'])
def test_dataset_reads_the_fixture(synthetic_refer, split):
    with open(os.path.join(synthetic_refer, 'synthetic_meta.json')) as f:
        counts = json.load(f)['flavours']['full']['counts'][split]
    kw = dict(data_root=synthetic_refer, ann_file='refsyn/instances.json',
              split_file='refsyn/refs(unc).p',
              data_prefix=dict(img_path='images/'), split=split)
    assert len(RefCOCODataset(**kw)) == counts['refs']
    assert len(RefCOCODataset(**kw, test_mode=True)) == counts['sentences']


# --------------------------------------------------------------------------
# ref_format='grefcoco': sentences naming one object, several or none
# --------------------------------------------------------------------------
GRES_IMAGES = dict(train=24, val=6, testA=6, testB=6)
NUMBERS = {'two': 2, 'three': 3, 'four': 4, 'five': 5, 'six': 6}
PLURALS = {'circles': 'circle', 'squares': 'square', 'triangles': 'triangle',
           'shapes': None}


@pytest.fixture(scope='module')
def gres_root(tmp_path_factory):
    """A REFER set and a gRefCOCO set of the same images (seed 5)."""
    root = str(tmp_path_factory.mktemp('gres'))
    generate_synthetic_refer(root, num_images=GRES_IMAGES, seed=5)
    generate_synthetic_refer(root, num_images=GRES_IMAGES, seed=5,
                             ref_format='grefcoco')
    return root


def _load_grefs(root, ann_dir='grefsyn'):
    with open(os.path.join(root, ann_dir, 'grefs(unc).json')) as f:
        refs = json.load(f)
    with open(os.path.join(root, ann_dir, 'scenes.json')) as f:
        return refs, json.load(f)


def _resolve_gres(scene, sent):
    """The ann_ids a sentence of the gRefCOCO grammar names (sorted), read
    apart from the generator: 'A and B', plurals, else a singular phrase."""
    if ' and ' in sent:
        parts = [_resolve(scene, p) for p in sent.split(' and ')]
        assert all(len(p) == 1 for p in parts) and len(set(sum(parts, []))) \
            == len(parts), sent
        return sorted(sum(parts, []))
    words = sent.split()
    if words[-1] not in PLURALS:
        return sorted(_resolve(scene, sent))
    count = 2 if words[0] == 'both' else None
    words = words[2:] if words[:2] == ['all', 'the'] else words[1:]
    if words[0] in NUMBERS:
        count, words = NUMBERS[words[0]], words[1:]
    colour = words[0] if len(words) == 2 else None
    assert colour in COLOURS | {None}, sent
    shape = PLURALS[words[-1]]
    objs = [o['ann_id'] for o in scene['objects']
            if colour in (None, o['colour']) and shape in (None, o['shape'])]
    assert len(objs) >= 2 and count in (None, len(objs)), (sent, scene)
    return sorted(objs)


def test_gres_sentences_name_exactly_their_targets(gres_root):
    refs, scenes = _load_grefs(gres_root)
    kinds = collections.Counter()
    for ref in refs:
        scene = scenes[str(ref['image_id'])]
        targets = [] if ref['ann_id'] == [-1] else ref['ann_id']
        assert ref['no_target'] is (not targets)
        assert 1 <= len(ref['sentences']) <= 3
        for s in ref['sentences']:
            assert _resolve_gres(scene, s['sent']) == targets, (s['sent'], scene)
        kinds['none' if not targets else 'multi' if len(targets) > 1
              else 'single'] += 1
    assert set(kinds) == {'single', 'multi', 'none'}


def test_gres_shares_of_multi_and_no_target_refs(tmp_path):
    res = generate_synthetic_refer(str(tmp_path), num_images=dict(train=300),
                                   ref_format='grefcoco', write_images=False)
    c = res['counts']['train']
    assert 0.25 <= c['multi'] / c['refs'] <= 0.4, c
    assert 0.12 <= c['no_target'] / c['refs'] <= 0.22, c
    refs, _ = _load_grefs(str(tmp_path))
    # every kind of plural and 'A and B' sentence occurs
    texts = [s['sent'] for r in refs for s in r['sentences']]
    for pattern in ('all the ', 'both ', 'the two ', ' and the '):
        assert any(pattern in t for t in texts), pattern


def test_gres_set_shares_images_and_leaves_the_refer_set_alone(gres_root,
                                                               tmp_path):
    alone = str(tmp_path / 'refer_only')
    generate_synthetic_refer(alone, num_images=GRES_IMAGES, seed=5)
    for name in ('refsyn/instances.json', 'refsyn/refs(unc).p',
                 'refsyn/scenes.json'):
        assert filecmp.cmp(os.path.join(alone, name),
                           os.path.join(gres_root, name), shallow=False)
    with open(os.path.join(gres_root, 'refsyn', 'scenes.json')) as f:
        refer_scenes = json.load(f)
    assert _load_grefs(gres_root)[1] == refer_scenes  # the same pictures
    with open(os.path.join(gres_root, 'synthetic_meta.json')) as f:
        assert set(json.load(f)['flavours']) == {'full', 'grefsyn'}
    again = generate_synthetic_refer(gres_root, num_images=GRES_IMAGES, seed=5,
                                     ref_format='grefcoco')
    assert again['skipped']


def test_gres_deterministic_and_cli(tmp_path, gres_root):
    from helpers.tool_runner import load_tool
    tool = load_tool('dataset_converters/generate_synthetic.py')
    out = str(tmp_path / 'cli')
    argv = ['--out', out, '--seed', '5', '--format', 'grefcoco'] + [
        a for s, n in GRES_IMAGES.items() for a in (f'--num-{s}', str(n))]
    assert tool.main(argv) == 0
    for name in ('grefsyn/instances.json', 'grefsyn/grefs(unc).json'):
        assert filecmp.cmp(os.path.join(out, name),
                           os.path.join(gres_root, name), shallow=False)
    assert not os.path.exists(os.path.join(out, 'refsyn'))


@pytest.mark.parametrize('split', ['train', 'val', 'testA', 'testB'])
def test_grefcoco_dataset_reads_the_gres_set(gres_root, split):
    from sera_mm.datasets import GRefCOCODataset
    from sera_mm.datasets.transforms import LoadReferringMask
    with open(os.path.join(gres_root, 'synthetic_meta.json')) as f:
        counts = json.load(f)['flavours']['grefsyn']['counts'][split]
    refs, scenes = _load_grefs(gres_root)
    kw = dict(data_root=gres_root, ann_file='grefsyn/instances.json',
              split_file='grefsyn/grefs(unc).json',
              data_prefix=dict(img_path='images/'), split=split)
    assert len(GRefCOCODataset(**kw)) == counts['refs']
    ds = GRefCOCODataset(**kw, test_mode=True)
    assert len(ds) == counts['sentences']
    load = LoadReferringMask()
    for i in range(len(ds)):
        info = ds[i]
        objs = {o['ann_id']: o for o in scenes[str(info['image_id'])]['objects']}
        targets = [a for a in info['ann_id'] if a != -1]
        mask = load(info)['gt_seg_map']
        assert info['no_target'] is (not targets)
        assert info['num_targets'] == len(targets)
        # disjoint shapes: the union's area is the sum of the targets' areas
        assert int(mask.sum()) == sum(objs[a]['area'] for a in targets)


def test_synthetic_gres_config_loads_the_set(gres_root):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from sera_mm.registry import DATASETS
    from helpers.tool_runner import REPO
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'gres', 'sera-tiny_synthetic-gres.py'))
    packed = {}
    with DefaultScope.overwrite_default_scope('sera_mm'):
        for key in ('train_dataloader', 'test_dataloader'):
            ds_cfg = cfg[key].dataset
            ds_cfg.data_root = gres_root
            ds = DATASETS.build(ds_cfg)
            packed[key] = [ds[i]['data_samples'] for i in range(len(ds))]
    for samples in packed.values():
        flags = {s.no_target for s in samples}
        assert flags == {True, False}
        for s in samples:
            assert s.num_targets == 0 if s.no_target else s.num_targets >= 1
            # a no-target sample's mask is empty, the others' are not
            assert bool(s.gt_sem_seg.data.sum() > 0) is not s.no_target
