"""tools/train.py --resume: continues from the saved iteration, with the saved
optimizer state, loading the checkpoint with weights_only=True."""
import os.path as osp
import shutil

import pytest
from mmengine.config import Config

from helpers import resume_probe
from helpers.checkpoint_io import assert_same_state, load_runner_checkpoint
from helpers.resume_probe import PROBE_FILE
from helpers.tool_runner import (REPO, TINY_CONFIG, explain, run_tool, train_options,
                                 weights_only_warnings)

# the subprocess imports the probe hook by module name (custom_imports)
PROBE_DIR = osp.dirname(osp.abspath(resume_probe.__file__))
SAVED_ITER = 4  # one epoch of the tiny_trained fixture


def probe_config(path) -> str:
    """The tiny config plus :class:`ResumeProbeHook` (nothing else changes)."""
    base = osp.join(REPO, TINY_CONFIG)
    hooks = Config.fromfile(base).to_dict().get('custom_hooks', [])
    path.write_text(
        f'_base_ = [{base!r}]\n'
        "custom_imports = dict(imports=['resume_probe'], allow_failed_imports=False)\n"
        f"custom_hooks = {hooks!r} + [dict(type='ResumeProbeHook')]\n")
    return str(path)


@pytest.mark.integration
def test_resume_continues_from_saved_iteration(tiny_trained, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(tiny_trained.work_dir, work_dir)
    saved_path = str(work_dir / 'epoch_1.pth')
    # last_checkpoint names the original folder; make the copy self-contained
    (work_dir / 'last_checkpoint').write_text(saved_path)

    proc = run_tool('train.py',
                    [probe_config(tmp_path / 'tiny_probe.py'), '--work-dir', str(work_dir),
                     '--resume'],
                    train_options(tiny_trained.data_root, max_epochs=2),
                    extra_pythonpath=PROBE_DIR)
    assert proc.returncode == 0, explain(proc)
    out = proc.output
    assert f'Auto resumed from the latest checkpoint {saved_path}' in out, out[-3000:]
    assert f'resumed epoch: 1, iter: {SAVED_ITER}' in out
    # only the second epoch is trained
    assert 'Epoch(train) [1][' not in out
    assert 'Epoch(train) [2][4/4]' in out
    assert not weights_only_warnings(out), weights_only_warnings(out)

    saved = load_runner_checkpoint(saved_path)
    probe = load_runner_checkpoint(str(work_dir / PROBE_FILE))
    assert (probe['epoch'], probe['iter']) == (1, SAVED_ITER)
    assert (saved['meta']['epoch'], saved['meta']['iter']) == (1, SAVED_ITER)
    # when training resumed, the optimizer (Adam moments, step counts, lr) and
    # the weights were exactly the saved ones
    assert_same_state(probe['optimizer'], saved['optimizer'], 'optimizer')
    assert_same_state(probe['state_dict'], saved['state_dict'], 'state_dict')

    final = load_runner_checkpoint(str(work_dir / 'epoch_2.pth'))
    assert (final['meta']['epoch'], final['meta']['iter']) == (2, 2 * SAVED_ITER)
    # Adam's step counts went on from the saved ones (a fresh optimizer would
    # stop at 4); parameters that always get a gradient stepped 8 times
    steps = [float(s['step']) for s in final['optimizer']['state'].values()]
    assert max(steps) == 2 * SAVED_ITER
    for idx, state in saved['optimizer']['state'].items():
        assert float(final['optimizer']['state'][idx]['step']) >= float(state['step'])
