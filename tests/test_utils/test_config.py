"""sera_mm.utils.config: the config loader and the leaf-dataset walk."""
import argparse
import os.path as osp

import pytest
from mmengine.config import Config

from sera_mm.utils.config import leaf_datasets, load_config, load_tool_config


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


def test_leaf_datasets_walks_concat_and_wrappers_in_order():
    a, b, c = dict(type='A'), dict(type='B'), dict(type='C')
    cfg = dict(type='ConcatDataset', datasets=[
        a, dict(type='RepeatDataset', times=2, dataset=dict(
            type='ConcatDataset', datasets=[b, c]))])
    assert list(leaf_datasets(cfg)) == [a, b, c]
    assert list(leaf_datasets(a)) == [a]
    assert list(leaf_datasets(None)) == []
