"""Stops a training whose loss turns NaN or Inf, and says so when a tested
checkpoint or its predictions hold NaN or Inf (``FiniteCheckHook``)."""
import glob
import logging
import math
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from sera_mm.registry import HOOKS
from .safe_checkpoint_hook import LAST_CHECKPOINT
#: How many offending tensors a message lists by name.
LISTED = 5


class NonFiniteLossError(FloatingPointError):
    """The training loss is NaN or Inf; the message names the iteration and
    the last checkpoint saved before it."""


class NonFiniteWeightsError(FloatingPointError):
    """Weights about to be trained from or saved hold NaN or Inf; the
    message names the checkpoint (or iteration) and the tensors."""


def _kind(values: torch.Tensor) -> str:
    """'NaN', 'Inf' or 'NaN and Inf' for a tensor with non-finite values."""
    nan = bool(torch.isnan(values).any())
    inf = bool(torch.isinf(values).any())
    return 'NaN and Inf' if nan and inf else 'NaN' if nan else 'Inf'


def nonfinite_tensors(state: Mapping[str, object]) -> List[Tuple[str, int, int, str]]:
    """The floating-point tensors of ``state`` that hold NaN or Inf.

    Args:
        state (Mapping): A state dict (name -> tensor; other values are
            skipped).

    Returns:
        list[tuple]: ``(name, number of non-finite values, numel, kind)``
        in ``state``'s order, ``kind`` as in ``'NaN'``, ``'Inf'``.
    """
    found = []
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or not (
                value.is_floating_point() or value.is_complex()):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            found.append((name, bad, value.numel(), _kind(value[~finite])))
    return found


def describe_nonfinite(found: Sequence[Tuple[str, int, int, str]], total: int) -> str:
    """'3 of 120 weight tensors hold NaN or Inf: a.weight (12 of 64 NaN), ...'"""
    listed = ', '.join(f'{name} ({bad} of {numel} {kind})'
                       for name, bad, numel, kind in found[:LISTED])
    more = f' and {len(found) - LISTED} more' if len(found) > LISTED else ''
    return (f'{len(found)} of {total} weight tensors hold NaN or Inf: '
            f'{listed}{more}')


def last_good_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint that ``last_checkpoint`` in ``work_dir`` names, else the
    newest ``*.pth`` there, else None."""
    marker = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(marker):
        try:
            with open(marker, encoding='utf-8') as f:
                named = f.read().strip()
        except (OSError, UnicodeDecodeError):
            named = ''
        if named and osp.isfile(named):
            return named
    saved = glob.glob(osp.join(work_dir, '*.pth'))
    return max(saved, key=osp.getmtime) if saved else None


def _model_state(runner) -> Dict[str, torch.Tensor]:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    return model.state_dict()


def _checkpoint_name(runner) -> Optional[str]:
    cfg = getattr(runner, 'cfg', None)
    name = getattr(runner, '_load_from', None)
    if name is None and cfg is not None:
        name = cfg.get('load_from')
    return name


@HOOKS.register_module()
class FiniteCheckHook(Hook):
    """Checks losses, weights and predictions for NaN and Inf.

    - Training: a NaN or Inf in any loss of an iteration (``loss``,
      ``loss_bce`` ...) stops the run with :class:`NonFiniteLossError`:
      ``loss is NaN at iteration 7 (epoch 2, 3 of 4) ...; the last good
      checkpoint is work_dirs/x/epoch_1.pth``. It runs before the checkpoint
      hook, so the poisoned weights of that step are never saved; and a
      checkpoint whose weights hold NaN or Inf is refused when it is about
      to be saved (:class:`NonFiniteWeightsError`), so every checkpoint in
      the work dir is finite. In distributed runs the ranks agree on the
      stop (one small all-reduce per iteration). Weights loaded by
      ``load_from`` or ``--resume`` that hold NaN or Inf stop the run
      before the first step.
    - Test: loaded weights that hold NaN or Inf give a warning naming the
      checkpoint and the tensors before the first batch; after each test
      (and validation) epoch, a warning counts the samples whose mask
      logits held NaN or Inf (their masks are empty: the scores mean
      nothing) and names the checkpoint.

    Args:
        check_loss (bool): Stop on a non-finite training loss. Defaults to
            True.
        check_weights (bool): Check loaded and saved weights. Defaults to
            True.
        check_logits (bool): Count non-finite mask logits in validation and
            test. Defaults to True.
    """

    # before the CheckpointHook (VERY_LOW) and the LoggerHook (BELOW_NORMAL)
    priority = 'VERY_HIGH'

    def __init__(self, check_loss: bool = True, check_weights: bool = True,
                 check_logits: bool = True) -> None:
        self.check_loss = check_loss
        self.check_weights = check_weights
        self.check_logits = check_logits
        self._bad_samples = 0
        self._samples = 0

    # -- training ---------------------------------------------------------
    def before_train(self, runner) -> None:
        if not self.check_weights:
            return
        state = _model_state(runner)
        found = nonfinite_tensors(state)
        if found:
            source = _checkpoint_name(runner)
            origin = f'checkpoint {source}' if source else 'the initial weights'
            raise NonFiniteWeightsError(
                f'{origin}: {describe_nonfinite(found, len(state))}; training from '
                'them cannot work (load another checkpoint)')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[Mapping] = None) -> None:
        if not self.check_loss or not isinstance(outputs, Mapping):
            return
        losses = {k: v for k, v in outputs.items() if 'loss' in k}
        bad = {k: v for k, v in losses.items() if not _finite(v)}
        flag = torch.tensor([1.0 if bad else 0.0])
        if get_world_size() > 1:
            all_reduce(flag, op='max')
        if not float(flag.item()):
            return
        iteration = runner.iter + 1
        where = f'iteration {iteration}'
        loop = getattr(runner, 'train_loop', None)
        if getattr(loop, 'max_epochs', None) is not None:
            where += (f' (epoch {runner.epoch + 1}, {batch_idx + 1} of '
                      f'{len(loop.dataloader)})')
        if bad:
            main = 'loss' if 'loss' in bad else next(iter(bad))
            kind = _value_kind(bad[main])
            values = ', '.join(f'{k}={_value_text(v)}' for k, v in losses.items())
            head = f'{main} is {kind} at {where} ({values})'
        else:
            head = f'loss is NaN or Inf on another rank at {where}'
        checkpoint = last_good_checkpoint(runner.work_dir)
        after = (f'the last good checkpoint is {checkpoint} (tools/train.py --resume '
                 'continues from it)') if checkpoint else \
            f'no checkpoint was saved in {runner.work_dir} before it'
        raise NonFiniteLossError(
            f'{head}: training stopped, the weights of this step are not saved; '
            f'{after}. Lower the learning rate, check the data of this batch or '
            'train in float32.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.check_weights:
            return
        state = checkpoint.get('state_dict') or {}
        found = nonfinite_tensors(state)
        if found:
            last = last_good_checkpoint(runner.work_dir)
            raise NonFiniteWeightsError(
                f'the weights at iteration {runner.iter} hold NaN or Inf '
                f'({describe_nonfinite(found, len(state))}): not saving them as a '
                'checkpoint, training stopped; ' +
                (f'the last good checkpoint is {last}' if last else
                 f'no checkpoint was saved in {runner.work_dir} before'))

    # -- validation and test ----------------------------------------------
    def before_test(self, runner) -> None:
        if not self.check_weights:
            return
        state = _model_state(runner)
        found = nonfinite_tensors(state)
        if found:
            source = _checkpoint_name(runner) or 'the model'
            print_log(
                f'checkpoint {source}: {describe_nonfinite(found, len(state))}; its '
                'predictions are meaningless (masks empty, scores near 0)',
                logger='current', level=logging.WARNING)

    def before_val_epoch(self, runner) -> None:
        self._bad_samples = self._samples = 0

    def before_test_epoch(self, runner) -> None:
        self._bad_samples = self._samples = 0

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._count(outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._count(outputs)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'val')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'test')

    def _count(self, outputs) -> None:
        if not self.check_logits or not outputs:
            return
        for sample in outputs:
            logits = _logits(sample)
            if logits is None:
                continue
            self._samples += 1
            self._bad_samples += not bool(torch.isfinite(logits).all())

    def _report(self, runner, mode: str) -> None:
        if not self.check_logits:
            return
        counts = torch.tensor([float(self._bad_samples), float(self._samples)])
        if get_world_size() > 1:
            all_reduce(counts, op='sum')
        bad, total = (int(c) for c in counts.tolist())
        if not bad:
            return
        loop = getattr(runner, '_test_loop' if mode == 'test' else '_val_loop', None)
        split = getattr(loop, 'split_name', None)
        what = f'test split {split}' if split else mode
        if mode == 'test':
            source = _checkpoint_name(runner)
            origin = f'checkpoint {source}' if source else 'the model'
        else:
            origin = f'the weights at iteration {runner.iter}'
        print_log(
            f'{what}: {bad} of {total} samples have NaN or Inf mask logits ({origin}); '
            'their masks are empty and the scores mean nothing',
            logger='current', level=logging.WARNING)


def _finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value.detach()).all())
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def _value_kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return _kind(value.detach()[~torch.isfinite(value.detach())])
    return 'NaN' if math.isnan(float(value)) else 'Inf'


def _value_text(value) -> str:
    try:
        number = float(value.detach().float().mean()) if isinstance(
            value, torch.Tensor) else float(value)
    except (TypeError, ValueError, RuntimeError):
        return str(value)
    return f'{number:.4g}'


def _logits(sample) -> Optional[torch.Tensor]:
    """The mask logits of one output sample (SegDataSample or dict)."""
    field = sample.get('seg_logits') if isinstance(sample, Mapping) else \
        getattr(sample, 'seg_logits', None)
    if field is None:
        return None
    data = field.get('data') if isinstance(field, Mapping) else getattr(field, 'data', field)
    return data if isinstance(data, torch.Tensor) else None
