"""Evaluate a checkpoint on the test split(s) of a config.

Every split the config lists in ``test_splits`` (or ``--splits``) is
evaluated in one process with the model loaded once
(:class:`sera_mm.engine.runner.MultiSplitTestLoop`); one table, a row per
split, is printed and written to ``test_results.{json,md}`` beside the
per-sentence records of each split (``per_sentence_<split>.jsonl``), in
``--out`` or else the work dir.

``--out`` is a folder (created if missing). An existing file, a name ending
like a file (``results.pkl``: mmseg 0.x's ``--out``) or a folder that cannot
be written into is refused before the model is built, naming the path.
Results of an earlier run there are replaced (a warning lists them). One run
at a time holds the folder (a lock file ``.test_run.lock``): a second run
sharing it stops at once, naming the first one's pid; a lock left by a
killed run is taken over with a warning. Weights or mask logits holding NaN
or Inf are reported in a warning that names the checkpoint
(``FiniteCheckHook``).

Example:
    python tools/test.py configs/sera/sera_dinov2-b_refcoco.py work_dirs/x/best.pth
    python tools/test.py CONFIG CKPT --splits val testA
    python tools/test.py CONFIG CKPT --out results/ --show-dir vis/
    python tools/test.py CONFIG CKPT --shuffle-sentences   # text-reading control
    bash tools/dist_test.sh CONFIG CKPT 2                   # 2 processes (GPUs or CPUs)
"""
import argparse
import contextlib
import copy
import os
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.runner import Runner

from sera_mm import register_all_modules
from sera_mm.engine.runner import (check_checkpoint_matches, check_shared_settings,
                                   dataloader_for_split, normalize_splits,
                                   select_splits, setup_cpu_distributed)
from sera_mm.utils.config import load_tool_config
from sera_mm.utils.preflight import check_config_inputs
from sera_mm.utils.results_dir import (ResultsDirLock, check_results_dir,
                                       warn_earlier_results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a sera_mm model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save logs, the results table and (without '
        '--out) the per-sentence records')
    parser.add_argument(
        '--out', help='folder (created if missing) for the results table '
        '(test_results.json/.md) and one JSON record per sentence and split '
        '(per_sentence_<split>.jsonl: ref id, sentence id, sentence, '
        'intersection, union, IoU); earlier results there are replaced; one '
        'run at a time (lock file .test_run.lock)')
    parser.add_argument(
        '--splits', nargs='+', metavar='SPLIT',
        help='splits to evaluate, overriding the config\'s test_splits (names '
        'of its named entries, or split names of the test dataset)')
    parser.add_argument(
        '--show-dir', help='dir to save the drawn predictions (one image per sentence)')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-interval', type=int, default=1,
                        help='with --show/--show-dir, draw every N-th batch (default 1: all)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--shuffle-sentences', action='store_true',
        help='control run: permute the sentences across samples (seeded) so that '
        'each image is paired with another referent\'s sentence; a model that '
        'reads the sentence must score far lower')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _evaluators(cfg: Config) -> list:
    """Returns the metric dicts of ``cfg.test_evaluator`` (dict or list)."""
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, (dict, ConfigDict)) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    return evaluator if isinstance(evaluator, list) else [evaluator]


def trigger_visualization_hook(cfg: Config, args: argparse.Namespace) -> None:
    """Turns on the visualization hook for ``--show`` / ``--show-dir``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks; refer to the '
            'usage "visualization=dict(type=\'ReferringVisualizationHook\')"')
    hook['draw'] = True
    hook['interval'] = args.show_interval
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir


def resolve_splits(cfg: Config, wanted: Optional[List[str]]) -> Optional[list]:
    """The split specs to evaluate, or None for mmengine's single TestLoop.

    ``--splits`` wins, then the config's ``test_splits``, then the split of
    the test dataset itself (a one-row table). None when the test dataset
    has no ``split`` (a dataset of another kind) and nothing else is given.
    """
    if wanted:
        return select_splits(cfg.get('test_splits'), wanted)
    if cfg.get('test_splits'):
        return list(cfg.test_splits)
    split = cfg.test_dataloader.get('dataset', {}).get('split')
    return [split] if isinstance(split, str) else None


def check_split_inputs(cfg: Config, splits: list) -> None:
    """``check_config_inputs(cfg, 'test')`` for the data of every split."""
    for name, overrides in normalize_splits(splits):
        probe = copy.deepcopy(cfg)
        probe.test_dataloader = dataloader_for_split(
            cfg.test_dataloader, name, overrides)
        try:
            check_config_inputs(probe, mode='test')
        except FileNotFoundError as e:
            raise FileNotFoundError(f'test split {name!r}: {e}') from None


def results_dirs(cfg: Config, args: argparse.Namespace,
                 splits: Optional[list]) -> List[Tuple[str, str]]:
    """``(folder, how errors name it)`` of every folder this run writes its
    results into: the table's (multi-split runs) and the per-sentence
    records' (each RefSegMetric's ``output_dir``)."""
    folders = []
    if splits is not None:
        folders.append(cfg.test_cfg.get('out_dir') or cfg.work_dir)
    for metric in _evaluators(cfg):
        if isinstance(metric, dict) and metric.get('output_dir'):
            folders.append(metric['output_dir'])
    named = []
    for folder in folders:
        if any(osp.abspath(folder) == osp.abspath(f) for f, _ in named):
            continue
        if args.out and osp.abspath(folder) == osp.abspath(args.out):
            arg = '--out'
        elif osp.abspath(folder) == osp.abspath(cfg.work_dir):
            arg = '--work-dir' if args.work_dir else 'the work dir'
        else:
            arg = 'the results folder'
        named.append((folder, arg))
    return named


def is_rank_zero() -> bool:
    """Whether this process is the (global) rank 0, before torch.distributed
    is set up: only rank 0 writes results."""
    for key in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        if os.environ.get(key, '').strip().isdigit():
            return int(os.environ[key]) == 0
    return True


def ensure_finite_check(cfg: Config) -> None:
    """Adds ``FiniteCheckHook`` to ``custom_hooks`` unless the config has it
    (as every config based on default_runtime.py does)."""
    hooks = list(cfg.get('custom_hooks') or []) + list((cfg.get('default_hooks') or {}).values())
    for hook in hooks:
        kind = hook.get('type') if isinstance(hook, dict) else type(hook)
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name.split('.')[-1] == 'FiniteCheckHook':
            return
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='FiniteCheckHook')]


def main() -> None:
    args = parse_args()
    register_all_modules()
    cfg = load_tool_config(args)
    check_shared_settings(cfg)

    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)
    if args.shuffle_sentences:
        cfg.test_dataloader.dataset.shuffle_sentences = True
    if args.out:
        for metric in _evaluators(cfg):
            metric['output_dir'] = args.out

    test_cfg = cfg.get('test_cfg') or {}
    splits = resolve_splits(cfg, args.splits)
    if test_cfg.get('type') == 'MultiSplitTestLoop' and not args.splits:
        # the config chose its loop itself (without splits it reads test_splits)
        splits = test_cfg.get('splits') or splits
    if splits is not None:
        cfg.test_cfg = dict(type='MultiSplitTestLoop', splits=splits,
                            out_dir=args.out or test_cfg.get('out_dir'),
                            fp16=test_cfg.get('fp16', False))

    ensure_finite_check(cfg)

    setup_cpu_distributed(cfg)
    if splits is not None:
        check_split_inputs(cfg, splits)
    else:
        check_config_inputs(cfg, mode='test')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')

    with contextlib.ExitStack() as held:
        if is_rank_zero():  # the one writer of the results
            split_names = None if splits is None else \
                [name for name, _ in normalize_splits(splits)]
            for folder, arg in results_dirs(cfg, args, splits):
                check_results_dir(folder, arg)
                held.enter_context(ResultsDirLock(folder, arg))
                warn_earlier_results(folder, split_names, arg)
        runner = Runner.from_cfg(cfg)
        # Runner loads with strict=False; a checkpoint of another model must
        # fail here, naming the keys, not score a half-random model.
        check_checkpoint_matches(runner.model, args.checkpoint)
        runner.test()


if __name__ == '__main__':
    main()
