"""mIoU and oIoU of the sentences that contain given words, against the rest.

Reads the per-sentence records that ``tools/test.py --out`` writes
(``per_sentence_<split>.jsonl``) and splits each file's sentences in two
groups: those with at least one of ``--words`` (whole words, case-insensitive)
and the others. The default words are the absolute-position words of the
synthetic generator, so on the synthetic set the table separates the
position sentences (absent from the 'no_position' flavour) from the
attribute and comparison ones.

Example::

    python tools/analysis_tools/sentence_groups.py \\
        work_dirs/cross_full/test/per_sentence_refsyn_val.jsonl \\
        work_dirs/cross_nopos/test/per_sentence_refsyn_val.jsonl --out groups.json
"""
import argparse
import json
import re
import sys
from typing import Dict, Iterable, List, Optional, Sequence

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def default_words() -> List[str]:
    """The synthetic generator's absolute-position words."""
    from sera_mm.datasets.synthetic import POSITION_WORDS
    return list(POSITION_WORDS)


def read_records(path: str) -> List[dict]:
    """The records of one ``per_sentence_*.jsonl`` file.

    Raises:
        ValueError: naming the file and line of a record that is not JSON or
            lacks ``sentence``, ``intersection``, ``union`` or ``iou``.
    """
    records = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{lineno}: not JSON ({e.msg})') from None
            missing = {'sentence', 'intersection', 'union', 'iou'} - set(record)
            if missing:
                raise ValueError(f'{path}:{lineno}: record lacks {sorted(missing)}')
            records.append(record)
    return records


def group_metrics(records: Iterable[dict], words: Sequence[str]) -> Dict[str, dict]:
    """``{'with': ..., 'without': ...}``, each ``dict(sentences, mIoU, oIoU)``
    in percent (None for an empty group)."""
    wanted = {w.lower() for w in words}
    groups: Dict[str, List[dict]] = {'with': [], 'without': []}
    for record in records:
        has = bool(wanted & set(WORD.findall(record['sentence'].lower())))
        groups['with' if has else 'without'].append(record)
    out = {}
    for name, members in groups.items():
        union = sum(r['union'] for r in members)
        out[name] = dict(
            sentences=len(members),
            mIoU=100 * sum(r['iou'] for r in members) / len(members) if members else None,
            oIoU=100 * sum(r['intersection'] for r in members) / union if union else None)
    return out


def format_table(results: Dict[str, Dict[str, dict]]) -> str:
    """Markdown: a row per file, sentences / mIoU / oIoU of both groups."""
    def num(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.2f}'

    lines = ['| records | with: sentences | mIoU | oIoU | without: sentences | mIoU | oIoU |',
             '|---|---:|---:|---:|---:|---:|---:|']
    for path, groups in results.items():
        cells = [path]
        for name in ('with', 'without'):
            g = groups[name]
            cells += [str(g['sentences']), num(g['mIoU']), num(g['oIoU'])]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='mIoU/oIoU of sentences with given words vs the rest')
    parser.add_argument('records', nargs='+', help='per_sentence_<split>.jsonl files')
    parser.add_argument('--words', nargs='+',
                        help='words that put a sentence in the "with" group '
                        "(default: the synthetic generator's position words)")
    parser.add_argument('--out', help='also write the results as JSON')
    args = parser.parse_args(argv)
    words = args.words or default_words()
    results = {}
    for path in args.records:
        try:
            results[path] = group_metrics(read_records(path), words)
        except (OSError, ValueError) as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    print(f'words: {" ".join(words)}')
    print(format_table(results))
    if args.out:
        from sera_mm.utils import atomic_write_json
        atomic_write_json(args.out, dict(words=words, results=results), indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
