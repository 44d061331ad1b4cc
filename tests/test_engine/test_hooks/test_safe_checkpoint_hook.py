"""SafeCheckpointHook: the new checkpoint and ``last_checkpoint`` are on disk
before an outdated checkpoint is removed; a failed save removes nothing;
a resumed run finishes the removals a kill interrupted; stale temporary
files go at start-up; an empty ``last_checkpoint`` is repaired. mmengine's
own hook, run the same way, removes first (the order these tests would
catch)."""
import os
import os.path as osp

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.fileio import LocalBackend
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import sera_mm.engine.hooks  # noqa: F401  (registers SafeCheckpointHook)
from sera_mm.engine.hooks.safe_checkpoint_hook import PENDING_REMOVALS
from sera_mm.utils import atomic, register_checkpoint_safe_globals


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return [dict(score=float(s)) for s in out.detach()]


class ToyData(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, idx):
        return dict(inputs=torch.full((2, ), float(idx)), data_samples=None)


class RisingScore(BaseMetric):
    """A score that improves at every validation: a new best each epoch."""
    calls = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        RisingScore.calls += 1
        return dict(acc=float(RisingScore.calls))


def _train(work_dir, hook_type, max_epochs=3, resume=False, backend='atomic_local'):
    # a unique experiment name: two runners built within one second under
    # the same name would share one MessageHub, and so the best score
    RisingScore.calls = 0
    register_checkpoint_safe_globals()  # what register_all_modules does, for --resume
    loader = dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='pseudo_collate'), batch_size=2, num_workers=0)
    runner = Runner(
        model=ToyModel(), work_dir=str(work_dir),
        experiment_name=f'{hook_type}_{osp.basename(work_dir)}_{max_epochs}_{resume}',
        train_dataloader=loader, val_dataloader=loader, val_evaluator=[RisingScore()],
        val_cfg=dict(), optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(checkpoint=dict(
            type=hook_type, interval=1, max_keep_ckpts=1, save_best='acc', rule='greater',
            backend_args=dict(backend=backend))),
        resume=resume, default_scope='sera_mm')
    runner.train()
    return runner


def _log(runner) -> str:
    with open(runner.logger.log_file) as f:
        return f.read()


@pytest.fixture
def file_events(monkeypatch):
    """Records ('write', name) at each atomic rename and ('remove', name) at
    each removal through the checkpoint hook's file backend; before each
    removal, ('last_checkpoint->' + the name it holds) as well."""
    events = []
    real_replace, real_remove = atomic.os.replace, LocalBackend.remove

    def spy_replace(src, dst):
        events.append(('write', osp.basename(dst)))
        real_replace(src, dst)

    def spy_remove(self, path):
        pointer = osp.join(osp.dirname(path), 'last_checkpoint')
        if osp.isfile(pointer):
            with open(pointer) as f:
                events.append(('pointer', 'last_checkpoint->' + osp.basename(f.read())))
        events.append(('remove', osp.basename(path)))
        real_remove(self, path)

    monkeypatch.setattr(atomic.os, 'replace', spy_replace)
    monkeypatch.setattr(LocalBackend, 'remove', spy_remove)
    return events


def _checkpoint_events(events):
    return [(op, name) for op, name in events
            if name.endswith('.pth') or name.startswith('last_checkpoint')]


def test_new_checkpoint_and_pointer_come_before_removal(tmp_path, file_events):
    _train(tmp_path, 'SafeCheckpointHook')
    events = _checkpoint_events(file_events)
    for epoch in (1, 2):
        for old, new in ((f'epoch_{epoch}.pth', f'epoch_{epoch + 1}.pth'),
                         (f'best_acc_epoch_{epoch}.pth', f'best_acc_epoch_{epoch + 1}.pth')):
            removed = events.index(('remove', old))
            assert events.index(('write', new)) < removed, events
        # when the outdated one goes, --resume would find the new one
        removed = events.index(('remove', f'epoch_{epoch}.pth'))
        assert events[removed - 1] == \
            ('pointer', f'last_checkpoint->epoch_{epoch + 1}.pth'), events
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) == \
        ['best_acc_epoch_3.pth', 'epoch_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_3.pth')


def test_mmengine_hook_removes_first(tmp_path, file_events):
    """The hazard this hook removes, shown on mmengine's hook."""
    _train(tmp_path, 'CheckpointHook', max_epochs=2)
    events = _checkpoint_events(file_events)
    assert events.index(('remove', 'epoch_1.pth')) < events.index(('write', 'epoch_2.pth'))
    assert events.index(('remove', 'best_acc_epoch_1.pth')) < \
        events.index(('write', 'best_acc_epoch_2.pth'))


def test_failed_save_removes_nothing(tmp_path, monkeypatch):
    real_replace = atomic.os.replace

    def full_disk_at_epoch_2(src, dst):
        if osp.basename(dst) in ('epoch_2.pth', 'best_acc_epoch_2.pth'):
            raise OSError(28, 'No space left on device')
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, 'replace', full_disk_at_epoch_2)
    with pytest.raises(OSError):
        _train(tmp_path, 'SafeCheckpointHook')
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) == \
        ['best_acc_epoch_1.pth', 'epoch_1.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')


def test_stale_temporaries_removed_at_start(tmp_path):
    stale = tmp_path / '.epoch_7.pth.k3j9x0ab.tmp'
    stale.write_bytes(b'half a checkpoint')
    mine = tmp_path / 'notes.tmp'
    mine.write_text('not a leftover')
    runner = _train(tmp_path, 'SafeCheckpointHook', max_epochs=1)
    assert not stale.exists() and mine.exists()
    assert f'Removed {stale}: the temporary file of a checkpoint write' in _log(runner)


def test_a_checkpoint_records_the_removals_that_follow_it(tmp_path):
    _train(tmp_path, 'SafeCheckpointHook', max_epochs=2)
    # epoch_2.pth was saved again after the new best, whose save removes the old one
    meta = torch.load(tmp_path / 'epoch_2.pth', map_location='cpu', weights_only=False)['meta']
    assert meta[PENDING_REMOVALS] == [str(tmp_path / 'best_acc_epoch_1.pth')]
    best = torch.load(tmp_path / 'best_acc_epoch_2.pth', map_location='cpu', weights_only=False)
    assert best['meta'][PENDING_REMOVALS] == [str(tmp_path / 'best_acc_epoch_1.pth')]


def test_resume_finishes_a_removal_that_a_kill_interrupted(tmp_path):
    _train(tmp_path, 'SafeCheckpointHook', max_epochs=2)
    # what a kill just before the removal leaves: the outdated file, named in
    # the meta of the checkpoint --resume loads
    outdated = tmp_path / 'best_acc_epoch_1.pth'
    outdated.write_bytes(b'outdated')
    runner = _train(tmp_path, 'SafeCheckpointHook', max_epochs=3, resume=True)
    assert not outdated.exists()
    log = _log(runner)
    assert 'resumed epoch: 2, iter: 4' in log
    assert f'Removed the outdated checkpoint {outdated}, whose removal a kill had ' \
        'interrupted' in log


def test_an_empty_last_checkpoint_is_repaired_before_resuming(tmp_path):
    """mmengine writes ``last_checkpoint`` in place: a kill there empties it."""
    _train(tmp_path, 'SafeCheckpointHook', max_epochs=2)
    (tmp_path / 'last_checkpoint').write_text('')
    runner = _train(tmp_path, 'SafeCheckpointHook', max_epochs=3, resume=True)
    assert 'resumed epoch: 2, iter: 4' in _log(runner)


def test_a_backend_that_cannot_hold_removals_is_refused(tmp_path):
    with pytest.raises(TypeError, match="backend_args=.*'local'.*backend='atomic_local'"):
        _train(tmp_path, 'SafeCheckpointHook', backend='local')
