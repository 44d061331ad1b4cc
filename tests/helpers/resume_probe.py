"""A hook for the resume test, imported by the tool through ``custom_imports``.

It saves what the runner holds when training starts, i.e. after
``Runner.load_or_resume``, so that the test can compare it with the
checkpoint the run resumed from.
"""
import os.path as osp

import torch
from mmengine.hooks import Hook

from sera_mm.registry import HOOKS

PROBE_FILE = 'resume_probe.pth'


@HOOKS.register_module(force=True)
class ResumeProbeHook(Hook):
    """Writes ``<work_dir>/resume_probe.pth`` in ``before_train``: the
    runner's epoch and iteration, the model's state dict and the optimizer
    wrapper's state dict (tensors and plain containers only)."""

    def before_train(self, runner) -> None:
        torch.save(
            dict(epoch=runner.epoch, iter=runner.iter,
                 state_dict=runner.model.state_dict(),
                 optimizer=runner.optim_wrapper.state_dict()),
            osp.join(runner.work_dir, PROBE_FILE))
