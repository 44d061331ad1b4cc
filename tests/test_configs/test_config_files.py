"""Every config under configs/ loads, and names only registered classes."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import Registry

import sera_mm.registry as sera_registry
from sera_mm.utils.config import READ_KEYS
from helpers.config_expectations import MODEL_EXPECTATIONS
from helpers.configs import REPO, config_files, iter_type_dicts

ALL_CONFIGS = config_files()
FULL_CONFIGS = config_files(bases=False)
#: What the Runner needs from a config that tools/train.py is given.
RUNNER_KEYS = ('model', 'train_dataloader', 'val_dataloader', 'test_dataloader',
               'val_evaluator', 'test_evaluator', 'optim_wrapper', 'param_scheduler',
               'train_cfg', 'val_cfg', 'test_cfg', 'default_hooks', 'default_scope')
REGISTRIES = [r for r in vars(sera_registry).values() if isinstance(r, Registry)]


def test_configs_are_found():
    """Every config of the expectation table is on disk, and no other."""
    assert FULL_CONFIGS == sorted(MODEL_EXPECTATIONS), (
        f'not in tests/helpers/config_expectations.py: '
        f'{sorted(set(FULL_CONFIGS) - set(MODEL_EXPECTATIONS))}; '
        f'not on disk: {sorted(set(MODEL_EXPECTATIONS) - set(FULL_CONFIGS))}')
    assert len(FULL_CONFIGS) >= 11, FULL_CONFIGS  # 4 sera, 6 ablations, 1 tiny
    assert 'configs/synthetic/sera-tiny_synthetic.py' in FULL_CONFIGS


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_config_loads(path):
    cfg = Config.fromfile(osp.join(REPO, path))
    assert len(cfg.keys()) > 0
    if path in FULL_CONFIGS:
        missing = [k for k in RUNNER_KEYS if k not in cfg]
        assert not missing, f'{path} lacks {missing}'
        assert cfg.default_scope == 'sera_mm'


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_no_variable_is_copied_into_several_keys(path):
    """Every top-level key is one a run reads (no helper variable whose value
    was copied into other keys when the file was read), so --cfg-options
    KEY=VALUE changes what it names."""
    cfg = Config.fromfile(osp.join(REPO, path))
    assert set(cfg.keys()) <= READ_KEYS, \
        f'{path}: top-level variables no run reads: {sorted(set(cfg.keys()) - READ_KEYS)}'


@pytest.mark.parametrize('path', FULL_CONFIGS)
def test_threshold_and_splits_are_set_in_one_key(path):
    """The mask threshold is model.test_cfg's (the metric scores the model's
    masks); the test splits are test_cfg.splits, a MultiSplitTestLoop's."""
    cfg = Config.fromfile(osp.join(REPO, path))
    assert 'threshold' in cfg.model.test_cfg
    for key in ('val_evaluator', 'test_evaluator'):
        metrics = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        # gRefCOCO's configs score GRES's metrics
        expected = 'GRefSegMetric' if path.startswith('configs/gres/') else 'RefSegMetric'
        assert [m['type'] for m in metrics] == [expected], key
        assert all('threshold' not in m for m in metrics), key
    assert cfg.test_cfg.type == 'MultiSplitTestLoop' and cfg.test_cfg.splits


def _registered(name: str) -> bool:
    return any(r.get(name) is not None for r in REGISTRIES)


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_config_types_are_registered(path):
    """Each ``type`` resolves from the sera_mm scope, as the Runner will
    resolve it (unprefixed through the parents, 'mmseg.X' in mmseg's scope)."""
    cfg = Config.fromfile(osp.join(REPO, path)).to_dict()
    types = list(iter_type_dicts(cfg))
    unknown = [(where, name) for where, name in types if not _registered(name)]
    assert not unknown, f'{path}: unregistered types {unknown}'


def test_type_check_rejects_unknown_names():
    assert _registered('ReferringSegmentor') and _registered('mmseg.PackSegInputs')
    assert not _registered('NoSuchModuleAnywhere')
    assert not _registered('mmseg.NoSuchModuleAnywhere')
