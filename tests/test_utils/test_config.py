"""sera_mm.utils.config: the config loader and the leaf-dataset walk."""
import argparse
import os.path as osp

import pytest
from mmengine.config import Config

from sera_mm.utils.config import (IneffectiveOverrideError, leaf_datasets, load_config,
                                  load_tool_config)


@pytest.fixture
def config_file(tmp_path) -> str:
    path = tmp_path / 'toy.py'
    path.write_text("model = dict(type='Toy', width=4)\nlr = 0.1\n")
    return str(path)


def test_load_config_merges_options_and_copies_a_config(config_file):
    cfg = load_config(config_file, {'model.width': 8})
    assert cfg.model.width == 8 and cfg.lr == 0.1
    copy = load_config(cfg, {'lr': 0.5})
    assert copy.lr == 0.5 and cfg.lr == 0.1


def test_load_config_refuses_what_is_not_a_config(tmp_path):
    with pytest.raises(FileNotFoundError, match='config not found: .*absent.py'):
        load_config(str(tmp_path / 'absent.py'))
    with pytest.raises(TypeError, match='path or a Config'):
        load_config(dict(model=None))


def test_load_tool_config_sets_launcher_and_work_dir(config_file):
    args = argparse.Namespace(config=config_file, cfg_options={'lr': 0.2},
                              launcher='none', work_dir=None)
    cfg = load_tool_config(args)
    assert isinstance(cfg, Config) and cfg.lr == 0.2 and cfg.launcher == 'none'
    assert cfg.work_dir == osp.join('./work_dirs', 'toy')
    args.work_dir = 'elsewhere'
    assert load_tool_config(args).work_dir == 'elsewhere'


def test_none_turns_off_any_default_hook(tmp_path):
    """default_hooks.epoch_seed=None (not one of mmengine's defaults, for
    which the Runner asserts) drops the hook; checkpoint=None (one of them)
    stays None, which the Runner reads as: remove mmengine's default."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    import sera_mm
    sera_mm.register_all_modules(init_default_scope=False)
    base = osp.join(osp.dirname(__file__), '..', '..', 'configs', '_base_', 'default_runtime.py')
    path = tmp_path / 'runtime.py'
    path.write_text(f"_base_ = [{osp.abspath(base)!r}]\n")
    args = argparse.Namespace(config=str(path), launcher='none', work_dir=None,
                              cfg_options={'default_hooks.epoch_seed': None,
                                           'default_hooks.visualization': None,
                                           'default_hooks.checkpoint': None})
    cfg = load_tool_config(args)
    assert 'epoch_seed' not in cfg.default_hooks and cfg.default_hooks.checkpoint is None
    runner = Runner.__new__(Runner)
    runner._hooks = []
    with DefaultScope.overwrite_default_scope('sera_mm'):
        runner.register_default_hooks(cfg.default_hooks)
        names = {type(h).__name__ for h in runner._hooks}
        assert 'EpochSeedHook' not in names and 'SafeCheckpointHook' not in names
        assert 'CheckpointHook' not in names and 'FiniteCheckHook' in names
        with pytest.raises(AssertionError):  # what the drop spares the user
            runner.register_default_hooks(dict(epoch_seed=None))


def test_leaf_datasets_walks_concat_and_wrappers_in_order():
    a, b, c = dict(type='A'), dict(type='B'), dict(type='C')
    cfg = dict(type='ConcatDataset', datasets=[
        a, dict(type='RepeatDataset', times=2, dataset=dict(
            type='ConcatDataset', datasets=[b, c]))])
    assert list(leaf_datasets(cfg)) == [a, b, c]
    assert list(leaf_datasets(a)) == [a]
    assert list(leaf_datasets(None)) == []


# -- --cfg-options that would change nothing ----------------------------------

BASE = '''\
max_epochs = 6
img_scale = 112
width = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='LinearLR', end=10),
                   dict(type='CosineAnnealingLR', end=max_epochs)]
_ann = dict(data_root='data/x/', scale=img_scale)
train_dataloader = dict(batch_size=2, dataset=dict(_ann, pipeline=[]))
test_dataloader = dict(batch_size=1)
val_dataloader = test_dataloader
model = dict(type='Toy', width=width, hidden=width * 2)
unused = 3
'''


@pytest.fixture
def variable_config(tmp_path) -> str:
    (tmp_path / 'base.py').write_text(BASE)
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./base.py']\n"
                     "train_dataloader = dict(batch_size={{_base_.width}})\n")
    return str(child)


def _refused(config, options):
    with pytest.raises(IneffectiveOverrideError) as info:
        load_config(config, options)
    return str(info.value)


def test_a_consumed_variable_is_refused_naming_the_keys_that_use_it(variable_config):
    message = _refused(variable_config, {'max_epochs': 1})
    assert message.startswith('--cfg-options max_epochs=1 would not change the keys')
    for key in ('train_cfg.max_epochs', 'train_cfg.val_interval', 'param_scheduler[1].end'):
        assert key in message, message
    assert 'base.py:4' in message and 'base.py:6' in message, message
    instead = message[message.index('set those keys instead: --cfg-options '):]
    assert set(instead.rstrip('.').split()[5:]) == {
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'param_scheduler.1.end=1'}


def test_values_computed_from_the_variable_and_base_placeholders(variable_config):
    message = _refused(variable_config, {'width': 8})
    assert 'model.width' in message and 'train_dataloader.batch_size' in message, message
    assert 'model.hidden (' in message and 'computed from it' in message, message
    assert 'child.py:2' in message  # the {{_base_.width}} placeholder


def test_helper_variables_pass_the_value_on(variable_config):
    message = _refused(variable_config, {'img_scale': 64})
    assert 'train_dataloader.dataset.scale' in message, message
    # a helper dict of the config is itself a variable
    message = _refused(variable_config, {'_ann.data_root': '/data/'})
    assert 'train_dataloader.dataset.data_root' in message, message
    assert '--cfg-options train_dataloader.dataset.data_root=/data/' in message


def test_options_that_take_effect_pass(variable_config):
    assert load_config(variable_config, {'train_cfg.max_epochs': 1}).train_cfg.max_epochs == 1
    # the variable together with every key that uses it
    cfg = load_config(variable_config, {'max_epochs': 1, 'train_cfg': dict(
        max_epochs=1, val_interval=1), 'param_scheduler.1.end': 1})
    assert cfg.max_epochs == 1 and cfg.param_scheduler[1].end == 1
    # used by nobody, or a dict the Runner reads itself (val_dataloader copied it)
    assert load_config(variable_config, {'unused': 4}).unused == 4
    assert load_config(variable_config, {'test_dataloader.batch_size': 3}).val_dataloader \
        .batch_size == 1
    assert load_config(variable_config, {'new_key': 1}).new_key == 1


def test_a_key_set_anew_by_a_child_is_not_listed(tmp_path):
    (tmp_path / 'base.py').write_text(BASE)
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./base.py']\nmax_epochs = 50\n"
                     "train_cfg = dict(max_epochs=50, val_interval=50)\n"
                     "param_scheduler = [dict(type='LinearLR', end=10)]\n")
    # the variable is 50, no key still holds the base's use of it
    assert load_config(str(child), {'max_epochs': 1}).max_epochs == 1


def test_the_tiny_config_max_epochs(tmp_path):
    """The reported case: the training ran 6 epochs."""
    from helpers.paths import REPO, TINY_CONFIG
    message = _refused(osp.join(REPO, TINY_CONFIG), {'max_epochs': 1})
    for key in ('train_cfg.max_epochs', 'train_cfg.val_interval',
                'default_hooks.checkpoint.interval', 'param_scheduler[1].end'):
        assert key in message, message
    assert 'detris-tiny_synthetic.py' in message
    message = _refused(osp.join(REPO, TINY_CONFIG), {'data_root': '/data/synthetic/'})
    for loader in ('train', 'val', 'test'):
        assert f'{loader}_dataloader.dataset.data_root' in message, message


def test_load_tool_config_refuses_too(variable_config):
    args = argparse.Namespace(config=variable_config, cfg_options={'max_epochs': 2},
                              launcher='none', work_dir=None)
    with pytest.raises(IneffectiveOverrideError, match='max_epochs=2'):
        load_tool_config(args)
