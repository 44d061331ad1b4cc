"""Logs what the SERA routers choose during training, validation and testing."""
from typing import Optional, Sequence

from mmengine.hooks import Hook

from sera_mm.registry import HOOKS
from .routing_stats import ModelRoutingStatistics


@HOOKS.register_module()
class RoutingStatsHook(Hook):
    """Logs per-expert selection frequency and mean routing weight.

    After every iteration it reads the routing decisions the model left behind
    (SERA-Fusion levels and SERA-Adapter soft routers). In training it writes
    them to the message hub every ``interval`` iterations (the logger shows
    them as ``routing/...``); after each validation or test epoch it logs one
    table and adds the scalars under ``val/routing/...`` or
    ``test/routing/...``. A model without routers is left alone.

    Args:
        interval (int): Training iterations between two logged averages.
            Defaults to 50.
    """

    priority = 'NORMAL'

    def __init__(self, interval: int = 50) -> None:
        self.interval = interval
        self._stats: Optional[ModelRoutingStatistics] = None

    def _ensure(self, runner) -> ModelRoutingStatistics:
        if self._stats is None:
            self._stats = ModelRoutingStatistics(runner.model)
        return self._stats

    def _publish(self, runner, mode: str) -> None:
        stats = self._ensure(runner)
        for router, experts in stats.summary().items():
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
        self._ensure(runner).reset()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        stats = self._ensure(runner)
        if stats.empty:
            return
        stats.update()
        if self.every_n_train_iters(runner, self.interval):
            self._publish(runner, 'train')
            stats.reset()

    def _before_eval(self, runner) -> None:
        self._ensure(runner).reset()

    def _after_eval_iter(self, runner) -> None:
        if not self._ensure(runner).empty:
            self._stats.update()

    def _after_eval_epoch(self, runner, mode: str) -> None:
        if self._ensure(runner).empty:
            return
        self._publish(runner, mode)
        self._log_table(runner, mode)
        self._stats.reset()

    def before_val_epoch(self, runner) -> None:
        self._before_eval(runner)

    def before_test_epoch(self, runner) -> None:
        self._before_eval(runner)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs: Optional[Sequence] = None) -> None:
        self._after_eval_iter(runner)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs: Optional[Sequence] = None) -> None:
        self._after_eval_iter(runner)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._after_eval_epoch(runner, 'val')

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._after_eval_epoch(runner, 'test')
