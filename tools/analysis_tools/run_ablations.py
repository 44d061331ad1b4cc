"""Train and test a ladder of configs over several seeds with one budget, and
tabulate the results (mean and spread over the seeds).

For each CONFIG and seed it writes a derived config (the epoch budget and the
seed set, nothing else changed) to ``WORK_DIR/configs/``, then runs
``tools/train.py`` and ``tools/test.py`` on it as subprocesses, in
``WORK_DIR/<config name>/seed<S>/``. A run whose ``test/test_results.json``
exists is not repeated, so an interrupted ladder continues where it stopped.
Finally it writes ``WORK_DIR/ablation_results.{json,md}``: per config and
split, mIoU and oIoU as ``mean ± half-range`` over the seeds, and the
difference of each config's mean val mIoU to the first config's. For the
configs of the SERA paper's tables (configs/ablations/README.md),
``paper_tables.py WORK_DIR`` beside this script prints those tables in the
paper's layout, the paper's numbers in brackets.

Examples::

    # the synthetic ladder of docs/en/experiments.md, 2 epochs, 2 seeds, 2 runs at a time
    python tools/analysis_tools/run_ablations.py \\
        configs/synthetic/detris-tiny_synthetic.py \\
        configs/synthetic/ablations/adapter-only-tiny_synthetic.py \\
        configs/synthetic/ablations/sera-tiny_top{1,2,3,4}_synthetic.py \\
        --seeds 0 1 --max-epochs 2 --jobs 2 --work-dir work_dirs/ablations_2ep
    # re-tabulate what is there without training
    python tools/analysis_tools/run_ablations.py CONFIGS... --work-dir DIR --table-only
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Dict, List, Optional, Sequence

from sera_mm.utils import atomic_write_json, atomic_write_text
from sera_mm.utils.config import load_config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
RESULTS = 'test_results.json'
TABLE_NAME = 'ablation_results'
METRICS = ('mIoU', 'oIoU')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Train and test configs over seeds with one budget; tabulate')
    parser.add_argument('configs', nargs='+', help='config files (the first is the reference)')
    parser.add_argument('--work-dir', required=True, help='folder of all runs and the table')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--max-epochs', type=int,
                        help="epoch budget of every run (default: each config's own); "
                        'schedulers, validation and checkpoint intervals that ended at '
                        'the old budget end at the new one')
    parser.add_argument('--splits', nargs='+', help='splits tested (default: the config\'s)')
    parser.add_argument('--jobs', type=int, default=1, help='runs at a time')
    parser.add_argument('--threads-per-job', type=int,
                        help='OMP/MKL threads of each run (default: CPU cores / jobs)')
    parser.add_argument('--table-only', action='store_true',
                        help='only tabulate the finished runs')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to every config, key=value')
    return parser.parse_args(argv)


def config_name(path: str) -> str:
    """The run name of a config: its file name without ``.py``."""
    return osp.splitext(osp.basename(path))[0]


def set_epoch_budget(cfg, max_epochs: int) -> None:
    """Changes the epoch budget of an epoch-based config in place.

    ``train_cfg.max_epochs`` becomes ``max_epochs``; every parameter
    scheduler ``end``, the validation interval and the checkpoint interval
    that equalled the old budget follow it (they are tied to it in the
    config through a variable that mmengine has already resolved), and the
    intervals are capped by the new budget.

    Raises:
        ValueError: if the config has no ``train_cfg.max_epochs``.
    """
    old = cfg.get('train_cfg', {}).get('max_epochs')
    if old is None:
        raise ValueError(f'{cfg.filename}: train_cfg.max_epochs is not set; '
                         '--max-epochs needs an epoch-based config')
    cfg.train_cfg.max_epochs = max_epochs
    if 'val_interval' in cfg.train_cfg and (cfg.train_cfg.val_interval == old
                                            or cfg.train_cfg.val_interval > max_epochs):
        cfg.train_cfg.val_interval = max_epochs
    ckpt = cfg.get('default_hooks', {}).get('checkpoint')
    if ckpt is not None and ckpt.get('by_epoch', True) and 'interval' in ckpt and (
            ckpt.interval == old or ckpt.interval > max_epochs):
        ckpt.interval = max_epochs
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for sched in schedulers:
        if sched.get('by_epoch', True) and sched.get('end') == old:
            sched['end'] = max_epochs
        if sched.get('by_epoch', True) and sched.get('T_max') == old:
            sched['T_max'] = max_epochs


def write_run_config(config: str, seed: int, max_epochs: Optional[int],
                     cfg_options: Optional[dict], out_dir: str) -> str:
    """Writes the derived config of one run and returns its path."""
    cfg = load_config(config, cfg_options)
    if max_epochs is not None:
        set_epoch_budget(cfg, max_epochs)
    cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)
    suffix = f'_e{max_epochs}' if max_epochs is not None else ''
    path = osp.join(out_dir, f'{config_name(config)}{suffix}_seed{seed}.py')
    atomic_write_text(path, cfg.pretty_text)
    return path


def run_dir(work_dir: str, config: str, seed: int) -> str:
    return osp.join(work_dir, config_name(config), f'seed{seed}')


def final_checkpoint(folder: str) -> str:
    """The checkpoint named by mmengine's ``last_checkpoint`` file in ``folder``."""
    marker = osp.join(folder, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'{marker} not found: the training in {folder} did not '
                                'save a checkpoint (see train.log there)')
    with open(marker) as f:
        return f.read().strip()


def run_one(config: str, seed: int, args: argparse.Namespace) -> Dict:
    """Trains and tests one (config, seed) unless its results exist.

    Returns ``dict(config, seed, run_dir, results)`` with the test results
    JSON, plus ``train_seconds`` when this tool timed the training; raises
    ``RuntimeError`` naming the log of a tool that failed.
    """
    folder = run_dir(args.work_dir, config, seed)
    results = osp.join(folder, 'test', RESULTS)
    record = dict(config=config, seed=seed, run_dir=folder)
    if not osp.isfile(results):
        os.makedirs(folder, exist_ok=True)
        run_cfg = write_run_config(config, seed, args.max_epochs, args.cfg_options,
                                   osp.join(args.work_dir, 'configs'))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [REPO] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))
        threads = args.threads_per_job or max(1, (os.cpu_count() or 1) // args.jobs)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        start = time.time()
        _run_tool(['train.py', run_cfg, '--work-dir', folder],
                  osp.join(folder, 'train.log'), env)
        train_s = time.time() - start
        test_args = ['test.py', run_cfg, final_checkpoint(folder),
                     '--work-dir', osp.join(folder, 'test')]
        if args.splits:
            test_args += ['--splits', *args.splits]
        _run_tool(test_args, osp.join(folder, 'test.log'), env)
        atomic_write_text(osp.join(folder, 'train_seconds.txt'), f'{train_s:.1f}\n')
    with open(results) as f:
        record['results'] = json.load(f)
    seconds_file = osp.join(folder, 'train_seconds.txt')
    if osp.isfile(seconds_file):
        with open(seconds_file) as f:
            record['train_seconds'] = float(f.read())
    return record


def _run_tool(tool_args: Sequence[str], log: str, env: Dict[str, str]) -> None:
    cmd = [sys.executable, osp.join(REPO, 'tools', tool_args[0]), *tool_args[1:]]
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(tool_args[:2])} failed (exit {proc.returncode}); '
                           f'see {log}')


def aggregate(records: Sequence[Dict], configs: Sequence[str]) -> Dict:
    """Mean and half-range over seeds of each metric, per config and split.

    Returns ``dict(splits=[...], rows=[dict(config, seeds, metrics={split:
    {metric: dict(mean, spread, values)}}, train_minutes,
    delta_first_split_mIoU)])``; the splits are those of the first record, in
    its order. ``delta_first_split_mIoU`` is the
    difference of the config's mean mIoU on the first split to the first
    config's.
    """
    if not records:
        raise ValueError('no finished runs to tabulate')
    splits = list(records[0]['results']['splits'])
    rows = []
    for config in configs:
        mine = sorted((r for r in records if r['config'] == config), key=lambda r: r['seed'])
        if not mine:
            continue
        metrics = {}
        for split in splits:
            metrics[split] = {}
            for metric in METRICS:
                values = [r['results']['splits'][split][metric] for r in mine]
                metrics[split][metric] = dict(
                    mean=statistics.fmean(values),
                    spread=(max(values) - min(values)) / 2, values=values)
        seconds = [r['train_seconds'] for r in mine if 'train_seconds' in r]
        rows.append(dict(config=config, seeds=[r['seed'] for r in mine], metrics=metrics,
                         train_minutes=statistics.fmean(seconds) / 60 if seconds else None))
    ref = rows[0]['metrics'][splits[0]]['mIoU']['mean']
    for row in rows:
        row['delta_first_split_mIoU'] = row['metrics'][splits[0]]['mIoU']['mean'] - ref
    return dict(splits=splits, metrics=list(METRICS), rows=rows)


def format_markdown(table: Dict) -> str:
    """The table of :func:`aggregate` as Markdown (``mean ± half-range``)."""
    splits = table['splits']
    head = ['config', 'seeds'] + [f'{s} {m}' for s in splits for m in table['metrics']] + [
        f'Δ {splits[0]} mIoU', 'train min/run']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in table['rows']:
        cells = [config_name(row['config']), ','.join(map(str, row['seeds']))]
        for split in splits:
            for metric in table['metrics']:
                m = row['metrics'][split][metric]
                cells.append(f"{m['mean']:.2f} ± {m['spread']:.2f}")
        cells.append(f"{row['delta_first_split_mIoU']:+.2f}")
        cells.append('' if row['train_minutes'] is None else f"{row['train_minutes']:.1f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for config in args.configs:
        if not osp.isfile(config):
            print(f'error: config file not found: {config}', file=sys.stderr)
            return 2
    jobs = [(c, s) for c in args.configs for s in args.seeds]
    records, failures = [], []
    if args.table_only:
        for config, seed in jobs:
            if osp.isfile(osp.join(run_dir(args.work_dir, config, seed), 'test', RESULTS)):
                records.append(run_one(config, seed, args))
    else:
        print(f'{len(jobs)} runs, {args.jobs} at a time, in {args.work_dir}', flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_one, c, s, args): (c, s) for c, s in jobs}
            for done, future in enumerate(as_completed(futures), 1):
                config, seed = futures[future]
                try:
                    records.append(future.result())
                    status = 'done'
                except RuntimeError as exc:
                    failures.append(str(exc))
                    status = f'FAILED: {exc}'
                print(f'[{done}/{len(jobs)}] {config_name(config)} seed {seed}: {status}',
                      flush=True)
    try:
        table = aggregate(records, args.configs)
    except ValueError as exc:
        print(f'error: {exc} in {args.work_dir}', file=sys.stderr)
        return 2
    table.update(max_epochs=args.max_epochs, seeds=args.seeds)
    markdown = format_markdown(table)
    atomic_write_json(osp.join(args.work_dir, f'{TABLE_NAME}.json'), table, indent=2)
    atomic_write_text(osp.join(args.work_dir, f'{TABLE_NAME}.md'), markdown)
    print(markdown)
    for failure in failures:
        print(f'error: {failure}', file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
