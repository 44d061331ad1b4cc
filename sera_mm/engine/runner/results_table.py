"""The table of a multi-split test run: one row per split, the number of
sentences and the metric's keys (:class:`~sera_mm.evaluation.RefSegMetric`'s
or :class:`~sera_mm.evaluation.GRefSegMetric`'s); printed as a PrettyTable
and written as JSON and Markdown."""
import os.path as osp
from typing import Dict, List, Optional, Sequence

from sera_mm.utils.atomic import atomic_write_json, atomic_write_text

#: The table's files.
TABLE_JSON, TABLE_MD = 'test_results.json', 'test_results.md'

#: The table's metric columns, in order: RefSegMetric's, GRefSegMetric's.
COLUMNS = ('mIoU', 'oIoU', 'Prec@0.5', 'Prec@0.6', 'Prec@0.7', 'Prec@0.8',
           'Prec@0.9')
GRES_COLUMNS = ('gIoU', 'cIoU', 'N-acc', 'T-acc', 'Pr@0.7', 'Pr@0.8', 'Pr@0.9')


def columns(rows: Dict[str, Dict[str, float]]) -> Sequence[str]:
    """The metric columns of ``rows``: :data:`GRES_COLUMNS` when a row holds
    ``gIoU``, else :data:`COLUMNS`."""
    return GRES_COLUMNS if any('gIoU' in row for row in rows.values()) else COLUMNS


def split_row(metrics: Dict[str, float], prefix: str) -> Dict[str, float]:
    """The metrics of one split (keys ``<prefix>/<name>``, as mmengine
    prefixes them) as ``{name: value}``; keys of other prefixes are left
    out."""
    head = prefix + '/'
    return {k[len(head):]: v for k, v in metrics.items() if k.startswith(head)}


def _cell(value: Optional[float]) -> str:
    return '-' if value is None else f'{float(value):.2f}'


def format_table(rows: Dict[str, Dict[str, float]],
                 sentences: Dict[str, int]) -> str:
    """The rows as a PrettyTable string (split, sentences, :func:`columns`)."""
    from prettytable import PrettyTable  # installed with mmseg
    table = PrettyTable(['split', 'sentences', *columns(rows)])
    for name, row in rows.items():
        table.add_row([name, sentences[name], *(_cell(row.get(c))
                                                for c in columns(rows))])
    return table.get_string()


def format_markdown(rows: Dict[str, Dict[str, float]],
                    sentences: Dict[str, int]) -> str:
    """The rows as a GitHub Markdown table (values in percent, 2 decimals)."""
    header = ['split', 'sentences', *columns(rows)]
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
    for name, row in rows.items():
        cells = [name, str(sentences[name]),
                 *(_cell(row.get(c)) for c in columns(rows))]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_table(out_dir: str, rows: Dict[str, Dict[str, float]],
                sentences: Dict[str, int],
                records: Optional[Dict[str, Optional[str]]] = None,
                extra: Optional[dict] = None) -> List[str]:
    """Writes ``test_results.json`` and ``test_results.md`` into ``out_dir``;
    called on rank 0 after the last split.

    Args:
        out_dir: the folder (created if missing).
        rows: ``{split: {metric: value}}`` in table order, values in percent
            at full precision.
        sentences: ``{split: number of sentences}``.
        records: ``{split: per-sentence records file}`` (or None).
        extra: further top-level JSON entries (config, checkpoint).

    Returns:
        The two paths written.
    """
    splits: Sequence[str] = list(rows)
    payload = dict(extra or {})
    payload['columns'] = list(columns(rows))
    payload['splits'] = {
        name: dict(sentences=sentences[name],
                   per_sentence=(records or {}).get(name),
                   **rows[name])
        for name in splits
    }
    json_path = osp.join(out_dir, TABLE_JSON)
    md_path = osp.join(out_dir, TABLE_MD)
    atomic_write_json(json_path, payload, indent=2)
    atomic_write_text(md_path, format_markdown(rows, sentences))
    return [json_path, md_path]
