"""Atomic writes: a crash mid-write leaves the previous file, never half of
a new one; mmengine's CheckpointHook writes through the atomic backend."""
import errno
import os
import os.path as osp

import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from sera_mm.utils import atomic
from sera_mm.utils.atomic import (AtomicLocalBackend, atomic_open, atomic_write_bytes,
                                  atomic_write_json, atomic_write_text,
                                  remove_stale_temporaries)


def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.endswith('.tmp')]


def test_atomic_write_replaces_and_keeps_old_on_error(tmp_path):
    path = tmp_path / 'sub' / 'table.md'
    atomic_write_text(path, 'old\n')
    assert path.read_text() == 'old\n'
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write('new, half')
            raise RuntimeError('killed mid-write')
    assert path.read_text() == 'old\n'
    assert not _leftovers(path.parent)
    atomic_write_json(path, dict(a=1))
    assert path.read_text() == '{"a": 1}\n'
    assert oct(path.stat().st_mode & 0o777) == oct(atomic.FILE_MODE)


def test_backend_is_registered_and_atomic(tmp_path, monkeypatch):
    backend = get_file_backend(backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    path = str(tmp_path / 'ckpt.pth')
    backend.put(b'first', path)
    backend.put_text('x', str(tmp_path / 'note'))
    assert open(path, 'rb').read() == b'first'

    def crash(fd):
        raise OSError('disk full')
    monkeypatch.setattr(atomic.os, 'fsync', crash)
    with pytest.raises(OSError):
        backend.put(b'second, cut short', path)
    assert open(path, 'rb').read() == b'first'
    assert not _leftovers(tmp_path)


def test_held_removals_run_after_the_block_and_spare_rewritten_files(tmp_path):
    backend = get_file_backend(backend_args=dict(backend='atomic_local'))
    old, same_name = str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'best.pth')
    backend.put(b'old', old)
    backend.put(b'old best', same_name)
    with backend.hold_removals():
        backend.remove(old)
        backend.remove(same_name)
        assert osp.isfile(old) and osp.isfile(same_name)  # held back
        assert [path for path, _ in backend.held] == [old, same_name]
        backend.put(b'new best', same_name)  # written anew: its removal is dropped
    assert not osp.exists(old)
    assert open(same_name, 'rb').read() == b'new best'
    backend.remove(same_name)  # outside the block: at once
    assert not osp.exists(same_name)


def test_a_block_that_raises_removes_nothing(tmp_path):
    backend = get_file_backend(backend_args=dict(backend='atomic_local'))
    old = str(tmp_path / 'epoch_1.pth')
    backend.put(b'old', old)
    with pytest.raises(OSError):
        with backend.hold_removals():
            backend.remove(old)
            raise OSError(28, 'No space left on device')
    assert osp.isfile(old) and backend.held is None


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out - data_samples) ** 2).mean())
        return out


class ToyData(Dataset):
    metainfo = dict(classes=('x', ))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)),
                    data_samples=torch.ones(1))


@pytest.mark.integration
def test_checkpoint_hook_saves_through_the_atomic_backend(tmp_path,
                                                          monkeypatch):
    """The config key the report gives the lead, on mmengine's own hook."""
    replaced = []
    real_replace = atomic.os.replace

    def spy_replace(src, dst):
        replaced.append(osp.basename(dst))
        if osp.basename(dst) == 'iter_2.pth':
            raise OSError('killed while saving iter_2')
        real_replace(src, dst)
    monkeypatch.setattr(atomic.os, 'replace', spy_replace)
    runner = Runner(
        model=ToyModel(), work_dir=str(tmp_path), experiment_name='atomic',
        train_dataloader=dict(
            dataset=ToyData(), sampler=dict(type='DefaultSampler'),
            collate_fn=dict(type='default_collate'), batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=1, by_epoch=False,
            backend_args=dict(backend='atomic_local'))),
        default_scope='mmengine')
    with pytest.raises(OSError, match='iter_2'):
        runner.train()
    assert replaced == ['iter_1.pth', 'iter_2.pth']
    # iter_1 is whole, iter_2 never appeared, nothing half-written is left
    assert osp.isfile(tmp_path / 'iter_1.pth')
    assert not osp.exists(tmp_path / 'iter_2.pth')
    assert not _leftovers(tmp_path)
    ckpt = torch.load(str(tmp_path / 'iter_1.pth'), map_location='cpu',
                      weights_only=False)
    assert ckpt['meta']['iter'] == 1


def test_remove_stale_temporaries_takes_only_atomic_open_leftovers(tmp_path, monkeypatch):
    def killed_replace(src, dst):
        raise KeyboardInterrupt  # not an OSError: the temporary file stays
    monkeypatch.setattr(atomic.os, 'replace', killed_replace)
    monkeypatch.setattr(atomic.os, 'remove', lambda path: None)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / 'epoch_3.pth', 'partial')
    monkeypatch.undo()
    (leftover, ) = _leftovers(tmp_path)
    # files that only look alike are the user's
    for name in ('notes.tmp', '.hidden.tmp', 'epoch_3.pth.abcdefgh.tmp'):
        (tmp_path / name).write_text('mine')

    assert remove_stale_temporaries(tmp_path) == [str(tmp_path / leftover)]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['notes.tmp', '.hidden.tmp', 'epoch_3.pth.abcdefgh.tmp'])
    assert remove_stale_temporaries(tmp_path / 'missing') == []


# -- a failed write names its target ------------------------------------------

FULL = errno.ENOSPC


def _fail_with(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize('patched', ['fsync', 'replace'])
def test_disk_full_names_the_path_keeps_the_errno_and_the_old_file(
        tmp_path, monkeypatch, patched):
    path = tmp_path / 'test_results.json'
    atomic_write_text(path, 'old\n')
    monkeypatch.setattr(atomic.os, patched, _fail_with(FULL))
    with pytest.raises(OSError) as info:
        atomic_write_json(path, dict(a=1))
    error = info.value
    assert error.errno == FULL and error.filename == str(path)
    assert str(path) in str(error) and 'cannot write' in str(error)
    assert 'disk or quota is full' in str(error) and 'left as it was' in str(error)
    assert isinstance(error.__cause__, OSError) and error.__cause__.errno == FULL
    monkeypatch.undo()
    assert path.read_text() == 'old\n'
    assert not _leftovers(tmp_path)


def test_a_write_that_fails_in_the_block_names_the_path(tmp_path):
    """What a full disk does to ``f.write`` (an OSError without a file name)."""
    path = tmp_path / 'per_sentence_val.jsonl'
    with pytest.raises(OSError) as info:
        with atomic_open(path) as f:
            f.write('{"key": "1/1"}\n')
            raise OSError(FULL, os.strerror(FULL))
    assert info.value.errno == FULL and str(path) in str(info.value)
    assert not path.exists() and not _leftovers(tmp_path)


@pytest.mark.skipif(not osp.exists('/dev/full'), reason='needs /dev/full')
def test_a_real_enospc_from_the_kernel(tmp_path, monkeypatch):
    """The temporary file is /dev/full, whose every write fails with ENOSPC."""
    real_mkstemp = atomic.tempfile.mkstemp

    def onto_dev_full(**kwargs):
        fd, name = real_mkstemp(**kwargs)
        os.close(fd)
        return os.open('/dev/full', os.O_WRONLY), name
    monkeypatch.setattr(atomic.tempfile, 'mkstemp', onto_dev_full)
    path = tmp_path / 'epoch_1.pth'
    with pytest.raises(OSError) as info:
        atomic_write_bytes(path, b'x' * 100_000)
    assert info.value.errno == FULL and info.value.filename == str(path)
    assert not path.exists() and not _leftovers(tmp_path)


def test_other_errnos_keep_their_subclass(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.tempfile, 'mkstemp', _fail_with(errno.EACCES))
    with pytest.raises(PermissionError, match='cannot write') as info:
        atomic_write_text(tmp_path / 'table.md', 'x')
    assert info.value.filename == str(tmp_path / 'table.md')
    monkeypatch.setattr(atomic.tempfile, 'mkstemp', _fail_with(errno.EROFS))
    with pytest.raises(OSError, match='Read-only file system') as info:
        atomic_write_text(tmp_path / 'table.md', 'x')
    assert info.value.errno == errno.EROFS


def test_an_error_of_the_block_about_another_file_passes_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        with atomic_open(tmp_path / 'out.txt') as f:
            f.write(open(tmp_path / 'missing.txt').read())
    assert info.value.filename == str(tmp_path / 'missing.txt')
    assert not _leftovers(tmp_path)
