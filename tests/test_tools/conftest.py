"""A tiny model trained once by tools/train.py, shared by the tool tests."""
import os.path as osp
from types import SimpleNamespace

import pytest

from helpers.tool_runner import TINY_CONFIG, explain, run_tool, train_options


@pytest.fixture(scope='session')
def tiny_trained(synthetic_refer, tmp_path_factory) -> SimpleNamespace:
    """One epoch (4 iterations) of the tiny config on ``synthetic_refer``.

    Returns ``work_dir``, ``checkpoint`` (epoch_1.pth), ``output`` (the
    tool's stdout + stderr) and ``data_root``. Treat them as read-only.
    """
    work_dir = str(tmp_path_factory.mktemp('tiny_train'))
    proc = run_tool('train.py', [TINY_CONFIG, '--work-dir', work_dir],
                    train_options(synthetic_refer, max_epochs=1))
    assert proc.returncode == 0, explain(proc)
    return SimpleNamespace(work_dir=work_dir,
                           checkpoint=osp.join(work_dir, 'epoch_1.pth'),
                           output=proc.output, data_root=synthetic_refer)
