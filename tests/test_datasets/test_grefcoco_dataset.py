"""GRefCOCODataset on a hand-made gRefCOCO set (grefs(unc).json / .p)."""
import copy
import json
import os
import pickle

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from pycocotools import mask as mask_utils

from sera_mm.datasets import GRefCOCODataset, RefCOCODataset
from sera_mm.registry import DATASETS, TRANSFORMS

from helpers.refer import dataset_cfg

# image id -> (height, width)
IMAGES = {1: (20, 30), 2: (24, 16), 3: (18, 18), 4: (10, 12)}


def _rect(image_id, r0, r1, c0, c1):
    m = np.zeros(IMAGES[image_id], np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def _compressed(mask):
    rle = mask_utils.encode(np.asfortranarray(mask))
    return dict(size=list(mask.shape), counts=rle['counts'].decode('ascii'))


def _uncompressed(mask):
    flat = mask.flatten(order='F')
    cuts = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], cuts, [flat.size]])).tolist()
    return dict(size=list(mask.shape), counts=([0] + runs) if flat[0] else runs)


# every annotation with the mask it must decode to (polygons by pycocotools:
# the union, not the rasterisation, is under test)
ANNS = {
    101: (1, [[2, 2, 12, 2, 12, 10, 2, 10]]),
    102: (1, [[16, 2, 28, 2, 28, 8], [16, 12, 28, 12, 22, 18]]),  # two parts
    103: (1, _uncompressed(_rect(1, 12, 20, 0, 10))),  # crowd, never painted
    201: (2, _compressed(_rect(2, 2, 10, 3, 12))),
    202: (2, _uncompressed(_rect(2, 14, 22, 1, 8))),
    301: (3, [[3, 3, 15, 3, 15, 15, 3, 15]]),
    401: (4, [[1, 1, 10, 1, 5, 8]]),
}
CROWD = {103}
# ref_id -> (ann_id list, image_id, split, sentence count)
REFS = {
    1: ([101, 102, 103], 1, 'train', 2),   # two targets + a crowd region
    2: ([-1], 1, 'train', 1),              # no target
    3: ([201, 202], 2, 'val', 2),          # compressed + uncompressed RLE
    4: ([-1], 2, 'val', 1),
    5: ([301], 3, 'testA', 1),             # a single target
    6: ([401], 4, 'testB', 3),
    7: ([-1], 4, 'testB', 2),
}


def _decode(ann_id):
    image_id, seg = ANNS[ann_id]
    h, w = IMAGES[image_id]
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg['counts'], list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = seg
    return mask_utils.decode(rle)


def expected_mask(ref_id):
    ann_ids, image_id, _, _ = REFS[ref_id]
    mask = np.zeros(IMAGES[image_id], np.uint8)
    for a in ann_ids:
        if a != -1 and a not in CROWD:
            mask = np.maximum(mask, _decode(a))
    return mask


def grefs():
    out, sent_id = [], 100
    for ref_id, (ann_ids, image_id, split, n) in REFS.items():
        sents = [dict(sent_id=sent_id + k, sent=f'ref {ref_id} sentence {k}',
                      raw=f'Ref {ref_id} sentence {k}',
                      tokens=['ref', str(ref_id), 'sentence', str(k)])
                 for k in range(n)]
        sent_id += n
        out.append(dict(
            ref_id=ref_id, ann_id=list(ann_ids), image_id=image_id,
            split=split, sentences=sents, sent_ids=[s['sent_id'] for s in sents],
            category_id=[1 if a != -1 else -1 for a in ann_ids],
            file_name=f'COCO_train2014_{image_id:012d}.jpg'))
    return out


def write_grefcoco(root, edit_refs=None, pickle_too=False):
    """Writes grefcoco/{instances.json, grefs(unc).json[, .p]} and
    train2014/ under ``root``; returns ``root``."""
    from PIL import Image
    os.makedirs(os.path.join(root, 'grefcoco'), exist_ok=True)
    os.makedirs(os.path.join(root, 'train2014'), exist_ok=True)
    instances = dict(
        images=[dict(id=i, file_name=f'COCO_train2014_{i:012d}.jpg', height=h,
                     width=w) for i, (h, w) in IMAGES.items()],
        annotations=[dict(id=a, image_id=i, category_id=1, segmentation=seg,
                          iscrowd=int(a in CROWD))
                     for a, (i, seg) in ANNS.items()],
        categories=[dict(id=1, name='thing')])
    refs = grefs()
    if edit_refs:
        edit_refs(refs)
    with open(os.path.join(root, 'grefcoco', 'instances.json'), 'w') as f:
        json.dump(instances, f)
    with open(os.path.join(root, 'grefcoco', 'grefs(unc).json'), 'w') as f:
        json.dump(refs, f)
    if pickle_too:
        with open(os.path.join(root, 'grefcoco', 'grefs(unc).p'), 'wb') as f:
            pickle.dump(refs, f, protocol=2)
    for i, (h, w) in IMAGES.items():
        Image.fromarray(np.full((h, w, 3), 9 * i, np.uint8)).save(
            os.path.join(root, 'train2014', f'COCO_train2014_{i:012d}.jpg'))
    return root


def gref_cfg(root, split_file='grefcoco/grefs(unc).json', **kwargs):
    return dict(data_root=root, ann_file='grefcoco/instances.json',
                split_file=split_file, data_prefix=dict(img_path='train2014/'),
                **kwargs)


@pytest.fixture(scope='module')
def gref_root(tmp_path_factory):
    return write_grefcoco(str(tmp_path_factory.mktemp('gref')), pickle_too=True)


@pytest.mark.parametrize('split_file', ['grefcoco/grefs(unc).json',
                                        'grefcoco/grefs(unc).p'])
@pytest.mark.parametrize('test_mode', [False, True])
def test_sample_counts_per_split(gref_root, split_file, test_mode):
    for split in ('train', 'val', 'testA', 'testB'):
        ds = DATASETS.build(dict(type='GRefCOCODataset', **gref_cfg(
            gref_root, split_file, split=split, test_mode=test_mode)))
        refs = [r for r in REFS.values() if r[2] == split]
        want = sum(r[3] for r in refs) if test_mode else len(refs)
        assert len(ds) == want, split


@pytest.mark.parametrize('split', ['train', 'val', 'testA', 'testB'])
def test_masks_are_the_union_and_flags_follow_the_ann_ids(gref_root, split):
    load = TRANSFORMS.build(dict(type='LoadReferringMask'))
    ds = GRefCOCODataset(**gref_cfg(gref_root, split=split, test_mode=True))
    seen = set()
    for i in range(len(ds)):
        info = ds[i]
        ann_ids = REFS[info['ref_id']][0]
        seen.add(info['ref_id'])
        assert info['ann_id'] == ann_ids
        assert info['text'].startswith(f"ref {info['ref_id']} ")
        out = load(copy.deepcopy(info))
        np.testing.assert_array_equal(out['gt_seg_map'],
                                      expected_mask(info['ref_id']))
        painted = [a for a in ann_ids if a != -1 and a not in CROWD]
        assert info['no_target'] is (ann_ids == [-1])
        assert info['num_targets'] == len(painted)
    assert seen == {r for r, v in REFS.items() if v[2] == split}


def test_crowd_region_and_no_target_masks(gref_root):
    load = TRANSFORMS.build(dict(type='LoadReferringMask'))
    ds = GRefCOCODataset(**gref_cfg(gref_root, split='train', test_mode=True))
    by_ref = {ds[i]['ref_id']: load(ds[i]) for i in range(len(ds))}
    multi, none = by_ref[1]['gt_seg_map'], by_ref[2]['gt_seg_map']
    assert (multi[_decode(103) == 1] == 0).all()   # the crowd region is left out
    assert (multi[_decode(101) == 1] == 1).all() and \
        (multi[_decode(102) == 1] == 1).all()
    assert none.shape == IMAGES[1] and not none.any()


def test_training_draws_one_of_the_refs_sentences(gref_root):
    ds = GRefCOCODataset(**gref_cfg(gref_root, split='train'))
    texts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        info = ds[[ds[i]['ref_id'] for i in range(len(ds))].index(1)]
        texts.add(info['text'])
        assert 'sentences' not in info
    assert texts == {'ref 1 sentence 0', 'ref 1 sentence 1'}


def test_packed_metainfo_carries_the_flags(gref_root, refer_root):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadReferringMask'),
                dict(type='PackReferringInputs')]
    with DefaultScope.overwrite_default_scope('sera_mm'):
        ds = GRefCOCODataset(**gref_cfg(gref_root, split='testB',
                                         test_mode=True, pipeline=pipeline))
        ref = RefCOCODataset(**dataset_cfg(refer_root, split='val',
                                           test_mode=True, pipeline=pipeline))
    got = {}
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        got[sample.ref_id] = (sample.no_target, sample.num_targets,
                              int(sample.gt_sem_seg.data.sum()))
    assert got == {6: (False, 1, int(expected_mask(6).sum())), 7: (True, 0, 0)}
    # RefCOCO's samples carry the same keys: one target each
    ref = ref[0]['data_samples']
    assert (ref.no_target, ref.num_targets) == (False, 1)


@pytest.mark.parametrize('ref_id, ann_id, words', [
    (3, [201, 999], ['ref_id 3', 'ann_id 999', 'instances.json']),
    (3, [-1, 201], ['ref_id 3', '[-1, 201]', 'mixes -1']),
    (3, [], ['ref_id 3', 'non-empty list']),
    (3, 201, ['ref_id 3', 'non-empty list']),
    (3, [101], ['ref_id 3', 'ann_id 101', 'belongs to image_id 1']),
    (1, [103], ['ref_id 1', 'crowd']),
    (5, [[301]], ['ref_id 5', 'ann_id must be an int or str']),
], ids=['missing id', '-1 mixed', 'empty list', 'not a list',
        'id of another image', 'only crowd', 'nested list'])
def test_hostile_refs_fail_at_build_naming_the_ref(tmp_path, ref_id, ann_id,
                                                   words):
    def edit(refs):
        next(r for r in refs if r['ref_id'] == ref_id)['ann_id'] = ann_id
    root = write_grefcoco(str(tmp_path), edit_refs=edit)
    with pytest.raises(ValueError) as e:
        GRefCOCODataset(**gref_cfg(root, split=REFS[ref_id][2]))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_missing_split_file_lists_the_grefs_files(gref_root):
    with pytest.raises(FileNotFoundError) as e:
        GRefCOCODataset(**gref_cfg(gref_root, 'grefcoco/grefs(umd).json'))
    assert 'grefs(umd).json' in str(e.value)
    assert "'grefs(unc).json'" in str(e.value) and "'grefs(unc).p'" in str(e.value)
