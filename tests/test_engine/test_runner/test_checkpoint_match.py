"""A checkpoint that does not fit the model is refused, naming the keys at
fault, before any batch runs; so is a file that is not a checkpoint, or one
crafted to run code (sera_mm/engine/runner/checkpoint_match.py)."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from sera_mm.engine.runner import check_checkpoint_matches, load_state_dict_keys
from sera_mm.registry import MODELS
from helpers.paths import REPO, TINY_CONFIG


@pytest.fixture(scope='module', autouse=True)
def _registered():
    from sera_mm import register_all_modules
    register_all_modules()


def _tiny_model(**changes):
    cfg = Config.fromfile(TINY_CONFIG)
    for key, value in changes.items():
        node = cfg.model
        *path, last = key.split('.')
        for p in path:
            node = node[p]
        node[last] = value
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def tiny_model():
    return _tiny_model()


@pytest.fixture(scope='module')
def other_arch_checkpoint(tmp_path_factory) -> str:
    """A checkpoint of the tiny model with 2 decoder layers and a wider
    head: other keys and other shapes."""
    model = _tiny_model(**{'decoder.num_layers': 2,
                           'decode_head.channels': 48})
    path = str(tmp_path_factory.mktemp('ckpt') / 'other_arch.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), path)
    return path


def test_checkpoint_of_another_architecture(tiny_model, other_arch_checkpoint):
    with pytest.raises(ValueError) as e:
        check_checkpoint_matches(tiny_model, other_arch_checkpoint)
    msg = str(e.value)
    assert other_arch_checkpoint in msg
    assert 'not in the model' in msg and 'decoder.layers.1.' in msg
    assert 'shape mismatch' in msg and 'decode_head.' in msg
    assert '[48' in msg or '48]' in msg


def test_matching_checkpoint_passes(tiny_model, tmp_path):
    """The control: the model's own weights fit (also under 'module.')."""
    path = str(tmp_path / 'own.pth')
    state = {f'module.{k}': v for k, v in tiny_model.state_dict().items()}
    torch.save(dict(state_dict=state), path)
    check_checkpoint_matches(tiny_model, path)
    assert set(load_state_dict_keys(path)) == set(tiny_model.state_dict())


def test_checkpoint_that_is_not_one(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_bytes(b'these are not weights')
    with pytest.raises(ValueError) as e:
        load_state_dict_keys(str(path))
    assert str(path) in str(e.value)


def test_checkpoint_crafted_to_run_code(tmp_path):
    target = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self):
            return (open, (str(target), 'w'))

    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=Evil()), str(path))
    with pytest.raises(ValueError) as e:
        load_state_dict_keys(str(path))
    assert str(path) in str(e.value)
    assert not target.exists()


@pytest.mark.integration
def test_test_tool_names_the_mismatched_keys(other_arch_checkpoint,
                                             synthetic_refer, tmp_path):
    """tools/test.py refuses the checkpoint before evaluating any batch."""
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={synthetic_refer}/',
                 f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'test.py'), TINY_CONFIG,
         other_arch_checkpoint, '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', *opts],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'does not fit the model' in proc.stdout, proc.stdout[-3000:]
    assert 'decoder.layers.1.' in proc.stdout
    assert 'Epoch(test)' not in proc.stdout  # no batch was evaluated
    assert not osp.exists(tmp_path / 'work' / 'test_results.json')
