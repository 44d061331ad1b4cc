"""Print the SERA paper's tables for a finished set of runs, the paper's
numbers in brackets.

Tables: the SERA row of the main table (Table 1), the component ablation
(Table 2) and the Top-k tables (RefCOCO, RefCOCO+, G-Ref), each in the
paper's layout. A cell is the mean over the runs found of one config's
metric on one split (mIoU or oIoU, percent), then the paper's number in
brackets; ``-`` where no run of that config was found. The row-to-config
map is written out in configs/ablations/README.md.

A run of config ``X`` (``configs/.../X.py``) is every ``test_results.json``
below ``ROOT/X/``, at any depth: ``run_ablations.py`` writes
``WORK_DIR/X/seed<S>/test/``, ``tools/test.py`` with the default work dir
``work_dirs/X/``. The k = 4 rows and SERA's rows pool the runs of the paper
config and of its written-out Top-4 twin (the same setting).

Examples::

    # train and test the RefCOCO Top-k rows (one seed), then print the tables
    python tools/analysis_tools/run_ablations.py \\
        configs/ablations/sera_dinov2-b_top{1,2,3,4}_refcoco.py \\
        --seeds 0 --work-dir work_dirs/paper
    python tools/analysis_tools/paper_tables.py work_dirs/paper --out work_dirs/paper/paper.md
    # the paper's numbers alone
    python tools/analysis_tools/paper_tables.py
"""
import argparse
import glob
import json
import os.path as osp
import statistics
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from sera_mm.engine.runner import TABLE_JSON
from sera_mm.utils import atomic_write_text

#: The config file names' data set parts and how the tables name them.
DATA = {'refcoco': 'RefCOCO', 'refcoco+': 'RefCOCO+', 'refcocog-google': 'G-Ref (google)',
        'refcocog-umd': 'G-Ref (umd)'}

# yapf: disable
#: The paper's Top-k tables: data set -> k -> split -> (mIoU, oIoU). The
#: G-Ref table's val(g) is the google run's val, val(u) and test(u) the umd
#: run's val and test.
TOP_K = {
    'refcoco': {
        1: dict(val=(75.46, 73.32), testA=(77.72, 76.31), testB=(72.80, 69.15)),
        2: dict(val=(76.47, 74.65), testA=(78.17, 76.91), testB=(73.55, 71.23)),
        3: dict(val=(76.20, 74.10), testA=(78.10, 77.09), testB=(73.73, 71.13)),
        4: dict(val=(76.50, 74.74), testA=(78.20, 77.09), testB=(73.73, 71.32)),
    },
    'refcoco+': {
        1: dict(val=(69.60, 66.31), testA=(73.39, 70.44), testB=(62.20, 57.30)),
        2: dict(val=(70.16, 66.64), testA=(74.16, 70.80), testB=(63.77, 58.92)),
        3: dict(val=(69.84, 66.41), testA=(74.40, 71.70), testB=(62.76, 57.43)),
        4: dict(val=(70.40, 66.91), testA=(74.43, 72.28), testB=(62.84, 58.20)),
    },
    'refcocog-google': {
        1: dict(val=(66.22, 61.80)),
        2: dict(val=(67.09, 63.84)),
        3: dict(val=(67.00, 63.35)),
        4: dict(val=(66.62, 63.30)),
    },
    'refcocog-umd': {
        1: dict(val=(66.61, 63.61), test=(67.58, 65.72)),
        2: dict(val=(68.24, 64.91), test=(68.58, 66.26)),
        3: dict(val=(66.95, 64.91), test=(67.55, 65.64)),
        4: dict(val=(68.79, 65.58), test=(68.94, 66.34)),
    },
}
#: The paper's component table (val mIoU; G-Ref: google val): row -> data set -> mIoU.
COMPONENTS = {
    'baseline': {'refcoco': 74.90, 'refcoco+': 68.70, 'refcocog-google': 65.10},
    'adapter-only': {'refcoco': 75.35, 'refcoco+': 69.42, 'refcocog-google': 65.74},
    'sera': {'refcoco': 76.50, 'refcoco+': 70.40, 'refcocog-google': 66.62},
}
COMPONENT_ROWS = {'baseline': 'Baseline', 'adapter-only': '+ SERA-Adapter',
                  'sera': '+ SERA-Adapter + SERA-Fusion (SERA)'}
#: The SERA row of the paper's main table (mIoU, one decimal): (data set, split) -> mIoU.
MAIN = {('refcoco', 'val'): 76.5, ('refcoco', 'testA'): 78.2, ('refcoco', 'testB'): 73.7,
        ('refcoco+', 'val'): 70.4, ('refcoco+', 'testA'): 74.4, ('refcoco+', 'testB'): 62.8,
        ('refcocog-umd', 'val'): 68.8, ('refcocog-umd', 'test'): 68.9,
        ('refcocog-google', 'val'): 66.6}
# yapf: enable

METRICS = ('mIoU', 'oIoU')


def configs_of(row: str, data: str) -> Tuple[str, ...]:
    """The config names (file names without ``.py``) of one table row.

    Args:
        row (str): ``'top1'`` ... ``'top4'``, ``'baseline'``,
            ``'adapter-only'`` or ``'sera'``.
        data (str): A key of :data:`DATA`.

    Returns:
        tuple[str]: The configs whose runs the row's cells pool: the paper
        config ``sera_dinov2-b_<data>`` (Top-4) and its written-out twin
        ``configs/ablations/sera_dinov2-b_top4_<data>.py`` for ``'top4'``
        and ``'sera'``, the ablation config alone otherwise.
    """
    if row in ('top4', 'sera'):
        return (f'sera_dinov2-b_{data}', f'sera_dinov2-b_top4_{data}')
    return (f'sera_dinov2-b_{row}_{data}', )


def paper_numbers(config: str) -> Dict[str, Tuple[float, float]]:
    """The paper's Top-k table numbers for a SERA config name.

    Args:
        config (str): ``sera_dinov2-b_<data>`` (the paper config, k = 4) or
            ``sera_dinov2-b_top<k>_<data>``.

    Returns:
        dict: ``{split: (mIoU, oIoU)}``.

    Raises:
        KeyError: the name is no row of the Top-k tables.
    """
    for data, rows in TOP_K.items():
        for k, numbers in rows.items():
            if config in configs_of(f'top{k}', data):
                return numbers
    raise KeyError(f'{config} is no row of the paper\'s Top-k tables')


class Cell(NamedTuple):
    """One number of a table: where to read it and what the paper says."""
    configs: Tuple[str, ...]
    split: str
    metric: str
    paper: float


class Table(NamedTuple):
    """One of the paper's tables: its columns, and its rows' cells."""
    title: str
    columns: Tuple[str, ...]
    rows: Tuple[Tuple[str, Tuple[Cell, ...]], ...]
    #: Decimals the paper prints.
    digits: int = 2


def paper_tables() -> List[Table]:
    """The paper's tables as :class:`Table` s, in the paper's order."""
    main_cells = tuple(Cell(configs_of('sera', data), split, 'mIoU', value)
                       for (data, split), value in MAIN.items())
    tables = [Table('Table 1, SERA (mIoU)', tuple(f'{DATA[data]} {split}' for data, split in MAIN),
                    (('SERA', main_cells), ), digits=1)]
    tables.append(Table(
        'Table 2, components (val mIoU)', tuple(DATA[d] for d in COMPONENTS['sera']),
        tuple((COMPONENT_ROWS[row], tuple(Cell(configs_of(row, data), 'val', 'mIoU', value)
                                          for data, value in values.items()))
              for row, values in COMPONENTS.items())))
    groups = (('refcoco', ), ('refcoco+', ), ('refcocog-google', 'refcocog-umd'))
    for group in groups:
        columns, rows = [], []
        for data in group:
            columns += [f'{DATA[data]} {split} {metric}' for split in TOP_K[data][1]
                        for metric in METRICS]
        for k in (1, 2, 3, 4):
            cells = tuple(Cell(configs_of(f'top{k}', data), split, metric, numbers[m])
                          for data in group for split, numbers in TOP_K[data][k].items()
                          for m, metric in enumerate(METRICS))
            rows.append((f'k = {k}', cells))
        title = 'Top-k, ' + ' + '.join(DATA[d] for d in group) + ' (mIoU, oIoU)'
        tables.append(Table(title, tuple(columns), tuple(rows)))
    return tables


def find_runs(roots: Sequence[str], config: str) -> List[dict]:
    """The ``splits`` of every test results table of ``config`` under the roots."""
    runs = []
    for root in roots:
        pattern = osp.join(glob.escape(osp.join(root, config)), '**', TABLE_JSON)
        for path in sorted(glob.glob(pattern, recursive=True)):
            with open(path) as f:
                runs.append(json.load(f)['splits'])
    return runs


def measured(cell: Cell, runs: Dict[str, List[dict]]) -> Optional[float]:
    """The mean of the cell's metric over the runs of its configs that
    tested its split; None when there is none."""
    values = [run[cell.split][cell.metric] for config in cell.configs
              for run in runs.get(config, []) if cell.split in run]
    return statistics.fmean(values) if values else None


def format_tables(tables: Sequence[Table], runs: Dict[str, List[dict]]) -> str:
    """The tables as Markdown, each cell ``measured [paper]``; then how many
    runs each config had."""
    out = []
    for table in tables:
        out += [f'### {table.title}', '', '| | ' + ' | '.join(table.columns) + ' |',
                '|---|' + '---:|' * len(table.columns)]
        for name, cells in table.rows:
            texts = []
            for cell in cells:
                value = measured(cell, runs)
                texts.append(f"{'-' if value is None else f'{value:.2f}'} "
                             f'[{cell.paper:.{table.digits}f}]')
            out.append(f'| {name} | ' + ' | '.join(texts) + ' |')
        out.append('')
    counts = [f'{config}: {len(found)}' for config, found in sorted(runs.items()) if found]
    out.append('Runs found: ' + (', '.join(counts) if counts else 'none') + '.')
    return '\n'.join(out) + '\n'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Print the SERA paper's tables for finished runs, the paper's numbers "
        'in brackets')
    parser.add_argument('roots', nargs='*',
                        help='folders holding one sub-folder per config name (the '
                        '--work-dir of run_ablations.py, or work_dirs/); none: the '
                        "paper's numbers alone")
    parser.add_argument('--out', help='also write the tables to this Markdown file')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for root in args.roots:
        if not osp.isdir(root):
            print(f'error: {root} is not a folder (give the --work-dir of '
                  'run_ablations.py, or work_dirs/)', file=sys.stderr)
            return 2
    tables = paper_tables()
    configs = sorted({c for t in tables for _, cells in t.rows for cell in cells
                      for c in cell.configs})
    runs = {config: find_runs(args.roots, config) for config in configs}
    text = format_tables(tables, runs)
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
