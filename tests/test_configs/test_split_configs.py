"""The cross-dataset and mixed configs: they point at real REFER files and
change the test data only."""
import os.path as osp

import pytest
from mmengine.config import Config

from sera_mm.datasets.synthetic import POSITION_WORDS
from sera_mm.engine.runner import dataloader_for_split, normalize_splits
from sera_mm.registry import DATASETS
from helpers.config_expectations import (MIXED_EXPECTATIONS, REFCOCO_CROSS_EXPECTATIONS,
                                         SYNTHETIC_CROSS_EXPECTATIONS)
from helpers.configs import config_files, declared_base
from helpers.paths import REPO

CONFIGS = osp.join(REPO, 'configs')
# (ann_file, split_file) -> splits of the REFER sets, as the base configs
# name the files
BASE_SETS = {
    ('refcoco/instances.json', 'refcoco/refs(unc).p'): {'val', 'testA', 'testB'},
    ('refcoco+/instances.json', 'refcoco+/refs(unc).p'): {'val', 'testA', 'testB'},
    ('refcocog/instances.json', 'refcocog/refs(umd).p'): {'val', 'test'},
    ('refcocog/instances.json', 'refcocog/refs(google).p'): {'val'},
}
REFCOCO_CROSS = sorted(REFCOCO_CROSS_EXPECTATIONS)
SYNTHETIC_CROSS = sorted(SYNTHETIC_CROSS_EXPECTATIONS)


@pytest.fixture(scope='module', autouse=True)
def _registered():
    from sera_mm import register_all_modules
    register_all_modules()


def test_cross_configs_are_found():
    """The tables name every config of configs/cross_dataset/ (a renamed,
    added or removed one fails here)."""
    on_disk = [f for f in config_files(bases=False)
               if f.split(osp.sep)[:2] == ['configs', 'cross_dataset']]
    assert sorted(REFCOCO_CROSS + SYNTHETIC_CROSS) == on_disk


def test_base_sets_match_the_dataset_configs():
    found = set()
    for name in ('refcoco', 'refcoco+', 'refcocog_umd', 'refcocog_google'):
        ds = Config.fromfile(osp.join(CONFIGS, '_base_', 'datasets', f'{name}.py')
                             ).test_dataloader.dataset
        found.add((ds.ann_file, ds.split_file))
    assert found == set(BASE_SETS)


@pytest.mark.parametrize('path', REFCOCO_CROSS, ids=osp.basename)
def test_refcoco_cross_configs_change_the_test_data_only(path):
    assert declared_base(path) == REFCOCO_CROSS_EXPECTATIONS[path]
    cfg = Config.fromfile(osp.join(REPO, path))
    base = Config.fromfile(osp.join(REPO, REFCOCO_CROSS_EXPECTATIONS[path]))
    for key in ('model', 'train_dataloader', 'val_dataloader', 'test_dataloader',
                'optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert cfg[key] == base[key], key
    specs = normalize_splits(cfg.test_cfg.splits)
    targets = []
    for name, overrides in specs:
        pair = (overrides['ann_file'], overrides['split_file'])
        assert pair in BASE_SETS, name
        assert overrides['split'] == 'val', name
        targets.append(pair)
    # its own val first, then every other data set (folder)
    trained_on = (base.train_dataloader.dataset.ann_file,
                  base.train_dataloader.dataset.split_file)
    assert targets[0] == trained_on
    assert {a for a, _ in targets} == {a for a, _ in BASE_SETS}


@pytest.mark.parametrize('path', sorted(MIXED_EXPECTATIONS), ids=osp.basename)
def test_mixed_config_uses_the_base_files_and_one_context_length(path):
    """The mixed configs train on the three sets' base files, evaluate every
    split of the four, and keep the model's 17 tokens (no data step sets one)."""
    cfg = Config.fromfile(osp.join(REPO, path))
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'MixedRefCOCODataset'
    trained = {(s['ann_file'], s['split_file']) for s in ds.sources
               if s.get('train', True)}
    assert trained == set(BASE_SETS) - {('refcocog/instances.json',
                                         'refcocog/refs(google).p')}
    assert {(s['ann_file'], s['split_file']) for s in ds.sources} == set(BASE_SETS)
    evaluated = {}
    for name, o in normalize_splits(cfg.test_cfg.splits):
        evaluated.setdefault((o['ann_file'], o['split_file']), set()).add(o['split'])
    assert evaluated == BASE_SETS  # every evaluation split of every set
    assert ds.pipeline == Config.fromfile(osp.join(CONFIGS, '_base_', 'datasets', 'refcoco.py')
                                          ).train_dataloader.dataset.pipeline
    assert not [t for p in (ds.pipeline, cfg.test_dataloader.dataset.pipeline)
                for t in p if 'context_length' in t]
    assert cfg.model.text_encoder.context_length == MIXED_EXPECTATIONS[path]


@pytest.mark.parametrize('path', SYNTHETIC_CROSS, ids=osp.basename)
def test_synthetic_cross_configs_build_on_the_generated_set(path, synthetic_refer):
    cfg = Config.fromfile(osp.join(REPO, path))
    names = []
    for name, overrides in normalize_splits(cfg.test_cfg.splits):
        loader = dataloader_for_split(cfg.test_dataloader, name, overrides)
        ds_cfg = dict(loader['dataset'], data_root=synthetic_refer + '/', pipeline=[])
        assert len(DATASETS.build(ds_cfg)) > 0, name
        names.append(name)
    assert {n.split('_')[0] for n in names} == {'refsyn', 'refsyn+'}
    train = DATASETS.build(dict(cfg.train_dataloader.dataset,
                                data_root=synthetic_refer + '/', pipeline=[]))
    words = {w for i in range(len(train))
             for w in train.get_data_info(i)['text'].split()}
    uses_position = bool(words & set(POSITION_WORDS))
    assert uses_position == SYNTHETIC_CROSS_EXPECTATIONS[path]
