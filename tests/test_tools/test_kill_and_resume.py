"""tools/train.py killed (SIGKILL) while it replaces checkpoints, again and
again, always leaves a checkpoint that ``--resume`` loads; the resumed run
ends with the weights and optimizer state of the run that was never killed,
bit for bit (persistent dataloader workers included)."""
import os
import os.path as osp
import signal

import pytest

from helpers import kill_switch
from helpers.checkpoint_io import assert_same_state, load_runner_checkpoint
from helpers.kill_switch import KILL_AT_ENV
from helpers.tool_runner import TINY_CONFIG, explain, run_tool, train_options

KILL_SWITCH_DIR = osp.dirname(osp.abspath(kill_switch.__file__))
MAX_EPOCHS = 3


def _config(tmp_path) -> str:
    """The tiny config with the kill switch imported (armed only by the
    environment variable)."""
    path = tmp_path / 'tiny_kill_switch.py'
    path.write_text(f"_base_ = [{osp.abspath(TINY_CONFIG)!r}]\n"
                    "custom_imports = dict(imports=['kill_switch'], "
                    "allow_failed_imports=False)\n")
    return str(path)


def _train(config, work_dir, data_root, kill_at=None, resume=False):
    options = train_options(data_root, max_epochs=MAX_EPOCHS) + [
        # the worst case of mmengine's order: one checkpoint kept
        'default_hooks.checkpoint.max_keep_ckpts=1', 'default_hooks.checkpoint.interval=1',
        'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True'
    ]
    env_before = os.environ.get(KILL_AT_ENV)
    os.environ.pop(KILL_AT_ENV, None)
    if kill_at:
        os.environ[KILL_AT_ENV] = kill_at
    try:
        return run_tool('train.py', [config, '--work-dir', str(work_dir)]
                        + (['--resume'] if resume else []), options,
                        extra_pythonpath=KILL_SWITCH_DIR)
    finally:
        os.environ.pop(KILL_AT_ENV, None)
        if env_before is not None:
            os.environ[KILL_AT_ENV] = env_before


def _assert_killed(proc):
    assert proc.returncode == -signal.SIGKILL, explain(proc)


def _resumable(work_dir) -> str:
    """Asserts ``last_checkpoint`` names a complete checkpoint; returns it."""
    pointer = work_dir / 'last_checkpoint'
    assert pointer.is_file(), sorted(os.listdir(work_dir))
    path = pointer.read_text().strip()
    assert osp.isfile(path), (path, sorted(os.listdir(work_dir)))
    load_runner_checkpoint(path)  # complete: it unpickles
    return path


@pytest.mark.integration
def test_killed_replacements_resume_to_the_uninterrupted_weights(synthetic_refer, tmp_path):
    config = _config(tmp_path)
    straight_dir = tmp_path / 'straight'
    proc = _train(config, straight_dir, synthetic_refer)
    assert proc.returncode == 0, explain(proc)

    work_dir = tmp_path / 'killed'
    # 1. killed when epoch_2.pth is complete in its temporary file, before
    #    it replaces anything
    _assert_killed(_train(config, work_dir, synthetic_refer, kill_at='write:epoch_2.pth'))
    assert _resumable(work_dir) == str(work_dir / 'epoch_1.pth')
    assert any(n.startswith('.epoch_2.pth.') for n in os.listdir(work_dir))

    # 2. resumed, then killed just before the outdated epoch_1.pth is removed
    proc = _train(config, work_dir, synthetic_refer, kill_at='remove:epoch_1.pth', resume=True)
    _assert_killed(proc)
    assert 'temporary file of a checkpoint write that was interrupted' in proc.output
    assert not any(n.endswith('.tmp') for n in os.listdir(work_dir))
    assert _resumable(work_dir) == str(work_dir / 'epoch_2.pth')

    # 3. resumed to the end
    proc = _train(config, work_dir, synthetic_refer, resume=True)
    assert proc.returncode == 0, explain(proc)
    assert 'resumed epoch: 2, iter: 8' in proc.output, explain(proc)
    assert 'whose removal a kill had interrupted' in proc.output
    assert _resumable(work_dir) == str(work_dir / f'epoch_{MAX_EPOCHS}.pth')
    assert sorted(n for n in os.listdir(work_dir) if n.startswith('epoch_')) == \
        [f'epoch_{MAX_EPOCHS}.pth']

    final = load_runner_checkpoint(str(work_dir / f'epoch_{MAX_EPOCHS}.pth'))
    expected = load_runner_checkpoint(str(straight_dir / f'epoch_{MAX_EPOCHS}.pth'))
    assert_same_state(final['state_dict'], expected['state_dict'], 'state_dict')
    assert_same_state(final['optimizer'], expected['optimizer'], 'optimizer')
