"""Evaluate a checkpoint on the test split(s) of a config.

Every split of the config's ``test_cfg.splits`` (or those of them
``--splits`` names) is evaluated in one process with the model loaded once
(:class:`sera_mm.engine.runner.MultiSplitTestLoop`); one table, a row per
split, is printed and written to ``test_results.{json,md}`` beside the
per-sentence records of each split (``per_sentence_<split>.jsonl``), in
``--out`` or else the work dir.

``--out`` is a folder (created if missing). An existing file, a name ending
like a file (``results.pkl``: mmseg 0.x's ``--out``) or a folder that holds
an earlier run's results (unless ``--force``) is refused before the model is
built, naming the path.

Example:
    python tools/test.py configs/sera/sera_dinov2-b_refcoco.py work_dirs/x/best.pth
    python tools/test.py CONFIG CKPT --splits val testA
    python tools/test.py CONFIG CKPT --out results/ --show-dir vis/
    python tools/test.py CONFIG CKPT --shuffle-sentences   # text-reading control
    bash tools/dist_test.sh CONFIG CKPT 2                   # 2 processes (GPUs or CPUs)
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.runner import Runner

from sera_mm import register_all_modules
from sera_mm.engine.runner import (check_checkpoint_matches, select_splits,
                                   setup_cpu_distributed)
from sera_mm.engine.runner.results_table import TABLE_JSON, TABLE_MD
from sera_mm.utils.config import load_tool_config

#: Endings that make ``--out`` look like a file name (mmseg 0.x's ``--out``
#: was a pickle file).
FILE_ENDINGS = ('.pkl', '.pickle', '.json', '.jsonl', '.md', '.txt', '.csv')


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
        'intersection, union, IoU); refused when it holds earlier results, '
        'unless --force')
    parser.add_argument('--force', action='store_true',
                        help='replace the results of an earlier run in --out')
    parser.add_argument(
        '--splits', nargs='+', metavar='SPLIT',
        help='splits to evaluate, of the config\'s test_cfg.splits (names of '
        'its named entries, or split names of the test dataset)')
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
    """The split specs to evaluate, or None for the config's own test loop.

    The splits of a ``MultiSplitTestLoop`` config (``test_cfg.splits``, the
    one setting), or those of them ``--splits`` names (a name that is not
    one of them is a split of the test dataset). None without ``--splits``
    when the config's loop is another (mmengine's TestLoop).
    """
    test_cfg = cfg.get('test_cfg') or {}
    ours = str(test_cfg.get('type', '')).split('.')[-1] == 'MultiSplitTestLoop'
    available = test_cfg.get('splits') if ours else None
    return select_splits(available, wanted) if wanted else available


def check_out(out: str, force: bool) -> None:
    """Refuses ``--out`` before anything is built when it is a file, looks
    like a file name, or holds an earlier run's results and ``--force`` is
    not given; the error names the path (and the files)."""
    what = 'a folder, for test_results.json/.md and per_sentence_<split>.jsonl'
    if osp.exists(out) and not osp.isdir(out):
        raise ValueError(f'--out {out} is an existing file; --out names {what}')
    if not osp.exists(out) and out.lower().endswith(FILE_ENDINGS):
        raise ValueError(f'--out {out} looks like a file name; --out names {what}')
    earlier = sorted(n for n in os.listdir(out) if n in (TABLE_JSON, TABLE_MD) or (
        n.startswith('per_sentence_') and n.endswith('.jsonl'))) if osp.isdir(out) else []
    if earlier and not force:
        raise FileExistsError(f'--out {out} holds the results of an earlier run '
                              f'({", ".join(earlier)}); give --force to replace them, '
                              'or another --out')


def main() -> None:
    args = parse_args()
    register_all_modules()
    if args.out:
        check_out(args.out, args.force)
    cfg = load_tool_config(args)

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
    if splits is not None:
        cfg.test_cfg = dict(type='MultiSplitTestLoop', splits=splits,
                            out_dir=args.out or test_cfg.get('out_dir'),
                            fp16=test_cfg.get('fp16', False))

    setup_cpu_distributed(cfg)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    runner = Runner.from_cfg(cfg)
    # Runner loads with strict=False; a checkpoint of another model must
    # fail here, naming the keys, not score a half-random model.
    check_checkpoint_matches(runner.model, args.checkpoint)
    runner.test()


if __name__ == '__main__':
    main()
