"""Stops a training whose loss turns NaN or Inf (``FiniteCheckHook``)."""
import math
from typing import Optional

import torch
from mmengine.hooks import Hook

from sera_mm.registry import HOOKS


@HOOKS.register_module()
class FiniteCheckHook(Hook):
    """Stops the training at the first iteration whose loss is NaN or Inf.

    Runs before the CheckpointHook, so the weights of that step are never
    saved; the error names the iteration and the last checkpoint saved
    (``--resume`` continues from it). As mmdetection's
    ``CheckInvalidLossHook``, each rank checks its own loss.
    """

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Raises FloatingPointError when ``outputs['loss']`` is not finite."""
        loss = (outputs or {}).get('loss', 0.0)
        loss = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        if not math.isfinite(loss):
            last = runner.message_hub.get_info('last_ckpt')
            raise FloatingPointError(
                f'loss is {loss} at iteration {runner.iter + 1}: training stopped. '
                + (f'The last checkpoint is {last}; lower the learning rate or train '
                   'in float32 and --resume from it.' if last else
                   'No checkpoint was saved before it; lower the learning rate or '
                   'train in float32.'))
