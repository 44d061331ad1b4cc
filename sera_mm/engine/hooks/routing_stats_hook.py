"""Logs what the SERA routers choose during training, validation and testing."""
from typing import Dict, Optional, Sequence

from mmengine.hooks import Hook
from torch import Tensor

from sera_mm.registry import HOOKS
from .routing_stats import ModelRoutingStatistics


@HOOKS.register_module()
class RoutingStatsHook(Hook):
    """Logs per-expert selection frequency and mean routing weight.

    In training it averages the routing usage the model's losses carry
    (``routing/<router>.<expert>.freq`` and ``.weight``, see
    ``ReferringSegmentor.loss``) over ``interval`` iterations and writes the
    averages to the message hub (the logger shows them as ``routing/...``).
    After each validation or test epoch it logs one table of the routing
    the predictions carried (their ``routing`` field) and adds the scalars
    under ``val/routing/...`` or ``test/routing/...``. A model without
    routers is left alone.

    Args:
        interval (int): Training iterations between two logged averages.
            Defaults to 50.
    """

    # before RuntimeInfoHook ('VERY_HIGH'), which logs every value left in
    # the training outputs, each batch's routing usage included
    priority = 'HIGHEST'

    def __init__(self, interval: int = 50) -> None:
        self.interval = interval
        self._stats: Optional[ModelRoutingStatistics] = None
        self._window: Dict[str, Tensor] = {}
        self._window_iters = 0

    def _ensure(self, runner) -> ModelRoutingStatistics:
        if self._stats is None:
            self._stats = ModelRoutingStatistics(runner.model)
        return self._stats

    def _publish(self, runner, mode: str) -> None:
        for router, experts in self._ensure(runner).summary().items():
            for expert, values in experts.items():
                key = f'{mode}/routing/{router}.{expert}'
                runner.message_hub.update_scalar(f'{key}.freq', values['freq'])
                runner.message_hub.update_scalar(f'{key}.weight', values['weight'])

    def _log_table(self, runner, mode: str) -> None:
        rows = [f'{router:<40s} ' + '  '.join(
                    f'{expert}: freq {v["freq"]:.3f} w {v["weight"]:.3f}±{v["weight_std"]:.3f}'
                    for expert, v in experts.items())
                for router, experts in self._ensure(runner).summary().items()]
        runner.logger.info(f'{mode} routing statistics:\n' + '\n'.join(rows))

    def before_train(self, runner) -> None:
        self._window, self._window_iters = {}, 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        routing = {k: outputs.pop(k) for k in list(outputs or {}) if k.startswith('routing/')}
        if not routing:
            return
        for key, value in routing.items():
            self._window[key] = self._window.get(key, 0.) + value.detach()
        self._window_iters += 1
        if self.every_n_train_iters(runner, self.interval):
            for key, total in self._window.items():
                runner.message_hub.update_scalar(f'train/{key}',
                                                 float(total) / self._window_iters)
            self._window, self._window_iters = {}, 0

    def _after_eval_epoch(self, runner, mode: str) -> None:
        if self._ensure(runner).empty:
            return
        self._publish(runner, mode)
        self._log_table(runner, mode)
        self._stats.reset()

    def before_val_epoch(self, runner) -> None:
        self._ensure(runner).reset()

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs: Optional[Sequence] = None) -> None:
        self._ensure(runner).update(outputs)

    before_test_epoch, after_test_iter = before_val_epoch, after_val_iter

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._after_eval_epoch(runner, 'val')

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._after_eval_epoch(runner, 'test')
