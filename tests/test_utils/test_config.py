"""sera_mm.utils.config: the config loader, its check of --cfg-options and the
leaf-dataset walk."""
import argparse
import os.path as osp

import pytest
from mmengine.config import Config

from sera_mm.utils.config import (READ_KEYS, UnreadOptionError, leaf_datasets, load_config,
                                  load_tool_config)


@pytest.fixture
def config_file(tmp_path) -> str:
    path = tmp_path / 'toy.py'
    path.write_text("model = dict(type='Toy', width=4)\noptim_wrapper = dict(lr=0.1)\n")
    return str(path)


def test_load_config_merges_options_and_copies_a_config(config_file):
    cfg = load_config(config_file, {'model.width': 8})
    assert cfg.model.width == 8 and cfg.optim_wrapper.lr == 0.1
    copy = load_config(cfg, {'optim_wrapper.lr': 0.5})
    assert copy.optim_wrapper.lr == 0.5 and cfg.optim_wrapper.lr == 0.1


def test_load_config_refuses_what_is_not_a_config(tmp_path):
    with pytest.raises(FileNotFoundError, match='config not found: .*absent.py'):
        load_config(str(tmp_path / 'absent.py'))
    with pytest.raises(TypeError, match='path or a Config'):
        load_config(dict(model=None))


def test_load_tool_config_sets_launcher_and_work_dir(config_file):
    args = argparse.Namespace(config=config_file, cfg_options={'optim_wrapper.lr': 0.2},
                              launcher='none', work_dir=None)
    cfg = load_tool_config(args)
    assert isinstance(cfg, Config) and cfg.optim_wrapper.lr == 0.2 and cfg.launcher == 'none'
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

VARIABLE_CONFIG = """\
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
test_dataloader = dict(batch_size=1)
val_dataloader = test_dataloader
"""


@pytest.fixture
def variable_config(tmp_path) -> str:
    path = tmp_path / 'variable.py'
    path.write_text(VARIABLE_CONFIG)
    return str(path)


def test_an_option_no_run_reads_is_refused_naming_it(variable_config):
    """A plain variable of the config (copied into train_cfg when the file
    was read) and a key that is not in the config: merging either would
    change nothing a run reads."""
    with pytest.raises(UnreadOptionError) as info:
        load_config(variable_config, {'max_epochs': 1, 'seed': 3, 'train_cfg.max_epochs': 2})
    message = str(info.value)
    assert "max_epochs=1: 'max_epochs' is a plain variable of the config" in message
    assert "seed=3: 'seed' is not a key of the config" in message
    assert 'train_cfg.max_epochs=2' not in message and 'variable.py' in message
    assert 'Set the key the run reads instead, e.g. train_cfg.max_epochs=1' in message


def test_options_on_keys_a_run_reads_pass(variable_config):
    cfg = load_config(variable_config, {'train_cfg.max_epochs': 1, 'sync_bn': 'torch',
                                        'test_dataloader.batch_size': 3, 'amp_dtype': 'float16'})
    assert cfg.train_cfg.max_epochs == 1 and cfg.sync_bn == 'torch'
    # each key means what it says: val_dataloader was a copy of test_dataloader
    assert cfg.test_dataloader.batch_size == 3 and cfg.val_dataloader.batch_size == 1
    assert {'model', 'train_cfg', 'test_cfg', 'sync_bn', 'amp_dtype'} <= READ_KEYS


def test_load_tool_config_refuses_too(variable_config):
    args = argparse.Namespace(config=variable_config, cfg_options={'max_epochs': 2},
                              launcher='none', work_dir=None)
    with pytest.raises(UnreadOptionError, match='max_epochs=2'):
        load_tool_config(args)


def test_no_config_parser_is_left():
    """The check reads the merged keys, not the config files' source."""
    import sera_mm.utils.config as module
    assert 'import ast' not in open(module.__file__).read()


def test_read_keys_cover_what_mmengines_runner_reads():
    """READ_KEYS lists what mmengine 0.10's Runner.from_cfg reads; an mmengine
    that reads a new top-level key would have it refused in --cfg-options."""
    import inspect
    import re

    from mmengine.runner import Runner
    read = set(re.findall(r"cfg(?:\.get\(|\[)'(\w+)'", inspect.getsource(Runner.from_cfg)))
    assert len(read) > 20, 'Runner.from_cfg no longer reads its keys as cfg.get(...)'
    assert read <= READ_KEYS, f'keys mmengine reads but READ_KEYS lacks: {read - READ_KEYS}'
