"""MixedRefCOCODataset: no evaluation image of any source is trained on."""
import os
import shutil

import pytest
from mmengine.dataset import ConcatDataset

from sera_mm.datasets import RefCOCODataset
from sera_mm.datasets import mixed_refer
from sera_mm.datasets.mixed_refer import MixedRefCOCODataset
from sera_mm.registry import DATASETS
from helpers.paths import REPO
from helpers.refer import ref_table, write_refer

# The hand-made REFER set's refs (ref_id: image) are 11, 12: image 1;
# 21, 22: image 2; 31: image 3; 41: image 4; 51: image 5. Three sources
# share these images and split them differently, as RefCOCO / RefCOCO+ /
# RefCOCOg do:
SPLITS = {
    'refcoco': {11: 'train', 12: 'train', 21: 'train', 22: 'train',
                31: 'val', 41: 'testA', 51: 'train'},
    'refcoco+': {11: 'train', 12: 'train', 21: 'val', 22: 'val',
                 31: 'train', 41: 'testA', 51: 'train'},
    'refcocog': {11: 'test', 12: 'test', 21: 'train', 22: 'train',
                 31: 'train', 41: 'train', 51: 'train'},
}
SPLIT_FILES = {'refcoco': 'refcoco/refs(unc).p',
               'refcoco+': 'refcoco+/refs(unc).p',
               'refcocog': 'refcocog/refs(umd).p'}


@pytest.fixture(scope='module', autouse=True)
def _registered():
    """The sera_mm scope, for the pipelines of the sources (as the Runner
    sets it from ``default_scope``)."""
    from sera_mm import register_all_modules
    register_all_modules()


def _resplit(splits):
    def edit(refs):
        for ref in refs:
            ref['split'] = splits[ref['ref_id']]
    return edit


@pytest.fixture(scope='module')
def shared_root(tmp_path_factory) -> str:
    """Three REFER sets over the same five images (read-only)."""
    root = str(tmp_path_factory.mktemp('mixed'))
    write_refer(root, edit_refs=_resplit(SPLITS['refcoco']))
    for name in ('refcoco+', 'refcocog'):
        other = str(tmp_path_factory.mktemp(name.replace('+', 'p')))
        write_refer(other, edit_refs=_resplit(SPLITS[name]),
                    write_images=False)
        shutil.move(os.path.join(other, 'refcoco'), os.path.join(root, name))
    os.rename(os.path.join(root, 'refcocog', 'refs(unc).p'),
              os.path.join(root, SPLIT_FILES['refcocog']))
    return root


def _sources(names=('refcoco', 'refcoco+', 'refcocog'), **extra):
    return [dict(name=n, ann_file=f'{n}/instances.json',
                 split_file=SPLIT_FILES[n], **extra.get(n, {})) for n in names]


def _mixed(root, sources, **kwargs):
    return DATASETS.build(dict(
        type='MixedRefCOCODataset', sources=sources, data_root=root,
        data_prefix=dict(img_path='train2014/'), pipeline=[], **kwargs))


def _evaluation_images(root):
    """Image ids of every evaluation sample, read through RefCOCODataset in
    test mode (independent of MixedRefCOCODataset's own pickle reading)."""
    images = set()
    for name, splits in SPLITS.items():
        for split in set(splits.values()) - {'train'}:
            ds = RefCOCODataset(
                data_root=root, ann_file=f'{name}/instances.json',
                split_file=SPLIT_FILES[name], split=split, test_mode=True,
                data_prefix=dict(img_path='train2014/'))
            images |= {ds[i]['image_id'] for i in range(len(ds))}
    return images


def _image_of():
    return {r['ref_id']: r['image_id'] for r in ref_table()}


def test_no_evaluation_image_is_trained_on(shared_root):
    mixed = _mixed(shared_root, _sources())
    eval_images = _evaluation_images(shared_root)
    assert eval_images == {1, 2, 3, 4}
    trained = [mixed[i] for i in range(len(mixed))]
    assert not {s['image_id'] for s in trained} & eval_images

    # Exactly the referents on held-out images are dropped: the expected
    # keep-list is derived from the split tables, not from the dataset.
    image_of = _image_of()
    expected = sorted(
        (name, ref_id) for name, splits in SPLITS.items()
        for ref_id, split in splits.items()
        if split == 'train' and image_of[ref_id] not in eval_images)
    assert expected == [('refcoco', 51), ('refcoco+', 51), ('refcocog', 51)]
    kept = sorted((name, mixed.datasets[k][i]['ref_id'])
                  for k, name in enumerate(mixed.source_names)
                  for i in range(len(mixed.datasets[k])))
    assert kept == expected
    # Training samples still draw one of their referent's own sentences.
    sentences = {r['ref_id']: {s['sent'] for s in r['sentences']}
                 for r in ref_table()}
    assert all(s['text'] in sentences[s['ref_id']] for s in trained)


def test_removal_report_says_how_many_and_why(shared_root, monkeypatch):
    logged = []
    monkeypatch.setattr(mixed_refer, 'print_log',
                        lambda msg, **kw: logged.append(msg))
    mixed = _mixed(shared_root, _sources())
    assert mixed.removal_report == {
        'refcoco': dict(total=5, kept=1, removed=4, reasons={
            'refcoco+/val': 2, 'refcocog/test': 2}),
        'refcoco+': dict(total=4, kept=1, removed=3, reasons={
            'refcoco/val': 1, 'refcocog/test': 2}),
        'refcocog': dict(total=5, kept=1, removed=4, reasons={
            'refcoco+/testA': 1, 'refcoco+/val': 2, 'refcoco/testA': 1,
            'refcoco/val': 1}),
    }
    assert len(logged) == 3
    assert 'refcocog: kept 1 of 5' in logged[2]
    assert 'refcoco+/val: 2' in logged[2] and 'refcoco/testA: 1' in logged[2]


def test_plain_union_would_leak(shared_root):
    """The control: without the filter, evaluation images are trained on."""
    union = ConcatDataset([
        RefCOCODataset(data_root=shared_root, ann_file=f'{n}/instances.json',
                       split_file=SPLIT_FILES[n], split='train',
                       data_prefix=dict(img_path='train2014/'))
        for n in SPLITS])
    images = {union[i]['image_id'] for i in range(len(union))}
    assert images & _evaluation_images(shared_root) == {1, 2, 3, 4}


def test_holdout_only_source(shared_root):
    """train=False: a set that only contributes held-out images."""
    mixed = _mixed(shared_root, _sources(
        ('refcoco', 'refcocog'), refcocog=dict(train=False)))
    assert mixed.source_names == ['refcoco']
    # refcoco's train images 1, 2, 5; image 1 is refcocog test
    assert sorted(mixed[i]['ref_id'] for i in range(len(mixed))) == [21, 22, 51]
    assert mixed.removal_report['refcoco']['reasons'] == {'refcocog/test': 2}


def test_holdout_splits_argument(shared_root):
    """Only the listed splits are held out."""
    mixed = _mixed(shared_root, _sources(('refcoco', 'refcocog')),
                   holdout_splits=['val'])
    # nothing is 'val' except refcoco's ref 31 (image 3, refcocog train)
    assert mixed.removal_report['refcocog'] == dict(
        total=5, kept=4, removed=1, reasons={'refcoco/val': 1})
    assert mixed.removal_report['refcoco']['removed'] == 0


@pytest.mark.parametrize('sources, kwargs, error, words', [
    ([], {}, ValueError, ['non-empty']),
    ([dict(ann_file='refcoco/instances.json',
           split_file='refcoco/refs(unc).p')], {}, ValueError, ["'name'"]),
    (_sources(('refcoco', 'refcoco')), {}, ValueError,
     ["'refcoco'", 'twice']),
    ([dict(name='x', ann_file='refcoco/instances.json',
           split_file='refcoco/refs(xyz).p')], {}, FileNotFoundError,
     ["'x'", 'refs(xyz).p']),
    (_sources(('refcoco', )), dict(holdout_splits=['train']), ValueError,
     ["'refcoco'", "'train'", 'holds out']),
    (_sources(('refcocog', ), refcocog=dict(test_mode=True)), {}, ValueError,
     ["'refcocog'", 'test_mode']),
])
def test_bad_configuration(shared_root, sources, kwargs, error, words):
    with pytest.raises(error) as e:
        _mixed(shared_root, sources, **kwargs)
    for word in words:
        assert word in str(e.value), (word, str(e.value))


def test_source_left_empty_is_an_error(shared_root, tmp_path):
    """A held-out-only set whose test split holds every image."""
    everything = write_refer(str(tmp_path), write_images=False,
                             edit_refs=lambda refs: [r.update(split='test')
                                                     for r in refs])
    sources = _sources(('refcoco', )) + [dict(
        name='all-test', train=False,
        ann_file=os.path.join(everything, 'refcoco', 'instances.json'),
        split_file=os.path.join(everything, 'refcoco', 'refs(unc).p'))]
    with pytest.raises(ValueError) as e:
        _mixed(shared_root, sources)
    assert "'refcoco'" in str(e.value) and 'held-out' in str(e.value)


def test_mixed_config_builds_on_the_coco_layout(shared_root, tmp_path):
    """configs/_base_/datasets/refcoco_mixed.py's training set, pipeline
    included, on the fixture plus a G-Ref google file whose val is image 1."""
    from mmengine.config import Config
    root = str(tmp_path / 'coco')
    shutil.copytree(shared_root, root)
    google = {ref_id: 'train' for ref_id in SPLITS['refcoco']}
    google.update({11: 'val', 12: 'val'})
    write_refer(str(tmp_path / 'google'), write_images=False,
                edit_refs=_resplit(google))
    shutil.copy(str(tmp_path / 'google' / 'refcoco' / 'refs(unc).p'),
                os.path.join(root, 'refcocog', 'refs(google).p'))
    cfg = Config.fromfile(os.path.join(REPO, 'configs', '_base_', 'datasets',
                                       'refcoco_mixed.py'))
    mixed = DATASETS.build(dict(cfg.train_dataloader.dataset,
                                data_root=root + '/'))
    assert mixed.source_names == ['refcoco', 'refcoco+', 'refcocog']
    assert mixed.removal_report['refcoco']['reasons'] == {
        'refcoco+/val': 2, 'refcocog-google/val': 2, 'refcocog/test': 2}
    assert len(mixed) == 3
    sample = mixed[0]  # through the training pipeline
    assert sample['data_samples'].metainfo['image_id'] == 5
    assert tuple(sample['inputs'].shape[-2:]) == (448, 448)


def test_registered():
    assert DATASETS.get('MixedRefCOCODataset') is MixedRefCOCODataset


def test_held_out_ref_with_an_unhashable_image_id(shared_root, tmp_path):
    """A held-out-only set is read by the mixed set itself: its image_id
    is type-checked before it is hashed (a deep tuple would crash Python)."""
    def edit(refs):
        refs[-1]['image_id'] = [5]  # ref 51, split 'test'
    other = write_refer(str(tmp_path), write_images=False, edit_refs=edit)
    path = os.path.join(other, 'refcoco', 'refs(unc).p')
    sources = _sources(('refcoco', )) + [dict(
        name='odd', train=False, split_file=path,
        ann_file=os.path.join(other, 'refcoco', 'instances.json'))]
    with pytest.raises(ValueError) as e:
        _mixed(shared_root, sources)
    for word in (path, 'ref #6', 'image_id', 'list'):
        assert word in str(e.value), (word, str(e.value))
