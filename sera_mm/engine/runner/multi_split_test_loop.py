"""A test loop that evaluates several splits with one model in one run."""
import copy
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import is_main_process
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.runner.amp import autocast
from mmengine.runner.base_loop import BaseLoop
from torch.utils.data import DataLoader

from sera_mm.evaluation import RefSegMetric
from sera_mm.registry import LOOPS, METRICS
from .results_table import format_table, split_row, write_table
from .split_spec import SplitSpec, dataloader_for_split, normalize_splits


@LOOPS.register_module()
class MultiSplitTestLoop(BaseLoop):
    """Runs the test loop once per split, then writes one table.

    mmengine 0.10.7's :class:`~mmengine.runner.TestLoop` holds one dataloader
    and one evaluator (mmdet evaluates a ConcatDataset and splits the results
    afterwards, mixing the splits' sentences in one metric state). This loop
    builds one dataloader and one evaluator per split from the runner's test
    configs, so every split is sampled, collected across ranks and
    summarised as mmengine's TestLoop does it. All datasets are built in
    ``__init__`` (a bad split fails before the model runs); :meth:`run`
    calls ``before_test``, then per split ``before_test_epoch``, the
    iterations and ``after_test_epoch`` (with that split's metrics), then
    ``after_test``. While a split runs, ``self.dataloader`` is its loader.

    Each metric gets the prefix ``<split>`` (``<prefix>/<split>`` when the
    config sets one): keys ``'val/mIoU'``, ``'testA/mIoU'`` ...; a
    :class:`~sera_mm.evaluation.RefSegMetric` writes its records to
    ``per_sentence_<prefix with '_' for '/'>.jsonl`` (a configured
    ``output_name`` gets ``_<split>`` before its extension).

    Args:
        runner (Runner): The runner.
        dataloader (dict): The test dataloader config; each split gets a
            copy whose dataset(s) get the split's overrides.
        evaluator (dict | list): The test evaluator config (metric dicts);
            built once per split.
        splits (Sequence[str | dict]): Split names and/or named dataset
            overrides (:mod:`sera_mm.engine.runner.split_spec`), set by
            ``configs/_base_/datasets/``; ``tools/test.py --splits`` picks.
        out_dir (str, optional): Folder of the table (``test_results.json``
            and ``.md``) and the default ``output_dir`` of RefSegMetrics that
            set none. Defaults to None: the runner's work dir.
        fp16 (bool): Run the model under autocast. Defaults to False.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[dict, DataLoader],
                 evaluator: Union[dict, list],
                 splits: Sequence[SplitSpec],
                 out_dir: Optional[str] = None,
                 fp16: bool = False) -> None:
        if not isinstance(dataloader, dict):
            raise TypeError(
                'MultiSplitTestLoop builds one dataloader per split from the '
                'test_dataloader config; got a built '
                f'{type(dataloader).__name__}')
        if isinstance(evaluator, Evaluator) or not isinstance(
                evaluator, (dict, list)):
            raise TypeError(
                'MultiSplitTestLoop builds one evaluator per split from the '
                f'test_evaluator config; got {type(evaluator).__name__}')
        self.split_names: List[str] = []
        self.split_name: Optional[str] = None  # the split being run
        self.dataloaders: Dict[str, DataLoader] = {}
        self.evaluators: Dict[str, Evaluator] = {}
        self.prefixes: Dict[str, List[str]] = {}
        self.records: Dict[str, Optional[str]] = {}
        self.out_dir = out_dir or runner.work_dir
        diff_rank_seed = (runner.cfg.get('randomness') or {}).get('diff_rank_seed', False)
        for name, overrides in normalize_splits(splits, 'test_cfg.splits'):
            loader_cfg = dataloader_for_split(dataloader, name, overrides)
            self.dataloaders[name] = runner.build_dataloader(
                loader_cfg, seed=runner.seed, diff_rank_seed=diff_rank_seed)
            eval_cfg = self._evaluator_cfg(evaluator, name)
            self.evaluators[name] = runner.build_evaluator(eval_cfg)
            self.split_names.append(name)
        super().__init__(runner, self.dataloaders[self.split_names[0]])
        self.fp16 = fp16
        self.results: Dict[str, Dict[str, float]] = {}

    def _evaluator_cfg(self, evaluator: Union[dict, list],
                       name: str) -> Union[dict, list]:
        """A copy of the evaluator config with split ``name``'s prefixes and
        record files (see the class docstring)."""
        cfg = copy.deepcopy(evaluator)
        metrics = cfg['metrics'] if isinstance(cfg, dict) and \
            'metrics' in cfg else cfg
        metrics = metrics if isinstance(metrics, list) else [metrics]
        prefixes, record = [], None
        for m in metrics:
            prefix = f"{m['prefix']}/{name}" if m.get('prefix') else name
            m['prefix'] = prefix
            prefixes.append(prefix)
            if not _is_ref_seg_metric(m):
                continue
            if m.get('output_dir') is None:
                m['output_dir'] = self.out_dir
            if m.get('output_name'):
                stem, ext = osp.splitext(m['output_name'])
                m['output_name'] = f'{stem}_{name}{ext}'
            else:
                m['output_name'] = \
                    f"per_sentence_{prefix.replace('/', '_')}.jsonl"
            record = record or osp.join(m['output_dir'], m['output_name'])
        self.prefixes[name] = prefixes
        self.records[name] = record
        return cfg

    def run(self) -> Dict[str, float]:
        """Evaluates every split; called by ``Runner.test``.

        Returns:
            dict[str, float]: The metrics of all splits, keys
            ``<split prefix>/<metric>``.
        """
        self.runner.call_hook('before_test')
        all_metrics: Dict[str, float] = {}
        for name in self.split_names:
            all_metrics.update(self._run_split(name))
        sentences = {n: len(self.dataloaders[n].dataset)
                     for n in self.split_names}
        table = format_table(self.results, sentences)
        print_log(f'Test results ({len(self.split_names)} splits):\n{table}',
                  logger='current')
        if is_main_process():
            cfg = self.runner.cfg
            paths = write_table(
                self.out_dir, self.results, sentences, self.records,
                extra=dict(config=cfg.filename,
                           checkpoint=cfg.get('load_from')))
            print_log(f'Test table written to {paths[0]} and {paths[1]}',
                      logger='current')
        self.runner.call_hook('after_test')
        return all_metrics

    def _run_split(self, name: str) -> Dict[str, float]:
        """One test epoch on split ``name``; returns its prefixed metrics."""
        self.dataloader = self.dataloaders[name]
        self.split_name = name  # read by ReferringVisualizationHook
        evaluator = self.evaluators[name]
        meta = getattr(self.dataloader.dataset, 'metainfo', None)
        if meta is not None:
            evaluator.dataset_meta = meta
            self.runner.visualizer.dataset_meta = meta
        else:
            print_log(f'split {name}: dataset has no metainfo',
                      logger='current', level=logging.WARNING)
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch, evaluator)
        # evaluate() gathers the ranks' results and drops the sampler's
        # padding (mmengine's collect_results keeps the first len(dataset)).
        metrics = evaluator.evaluate(len(self.dataloader.dataset))
        row: Dict[str, float] = {}
        for prefix in self.prefixes[name]:
            row.update(split_row(metrics, prefix))
        self.results[name] = row
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict,
                 evaluator: Evaluator) -> None:
        """Runs one batch and feeds the predictions to ``evaluator``."""
        self.runner.call_hook(
            'before_test_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs = self.runner.model.test_step(data_batch)
        evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            'after_test_iter', batch_idx=idx, data_batch=data_batch,
            outputs=outputs)


def _is_ref_seg_metric(metric_cfg: dict) -> bool:
    """Whether a metric config builds a RefSegMetric (or a subclass)."""
    metric_type = metric_cfg.get('type')
    if isinstance(metric_type, type):
        return issubclass(metric_type, RefSegMetric)
    cls = METRICS.get(metric_type) if isinstance(metric_type, str) else None
    return isinstance(cls, type) and issubclass(cls, RefSegMetric)
