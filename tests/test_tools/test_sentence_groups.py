"""tools/analysis_tools/sentence_groups.py: grouping by words and the metrics."""
import json

import pytest

from helpers.tool_runner import load_tool


def the_tool():
    return load_tool('analysis_tools/sentence_groups.py')


def record(sentence, inter, union):
    return dict(sentence=sentence, intersection=inter, union=union,
                iou=inter / union if union else 1.0)


RECORDS = [
    record('the leftmost square', 10, 40),        # with, IoU 0.25
    record('the circle on the Left', 30, 40),     # with (case-insensitive), 0.75
    record('the red circle', 45, 50),             # without, 0.9
    record('the circle leftover', 5, 50),         # without: 'leftover' is not 'left'
]


def test_groups_split_on_whole_words_and_give_miou_and_oiou():
    tool = the_tool()
    groups = tool.group_metrics(RECORDS, ['left', 'leftmost'])
    assert groups['with']['sentences'] == 2
    assert groups['with']['mIoU'] == pytest.approx(50.0)          # (25 + 75) / 2
    assert groups['with']['oIoU'] == pytest.approx(50.0)          # 40 / 80
    assert groups['without']['sentences'] == 2
    assert groups['without']['mIoU'] == pytest.approx(50.0)       # (90 + 10) / 2
    assert groups['without']['oIoU'] == pytest.approx(50.0)       # 50 / 100


def test_empty_group_has_no_metrics():
    groups = the_tool().group_metrics(RECORDS[2:3], ['top'])
    assert groups['with'] == dict(sentences=0, mIoU=None, oIoU=None)
    assert groups['without']['mIoU'] == pytest.approx(90.0)


def test_default_words_are_the_generator_position_words():
    from sera_mm.datasets.synthetic import POSITION_WORDS
    assert the_tool().default_words() == list(POSITION_WORDS)


def test_cli_writes_table_and_json(tmp_path, capsys):
    tool = the_tool()
    path = tmp_path / 'per_sentence_val.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in RECORDS))
    out = tmp_path / 'groups.json'
    assert tool.main([str(path), '--words', 'left', 'leftmost', '--out', str(out)]) == 0
    assert f'| {path} | 2 | 50.00 | 50.00 | 2 | 50.00 | 50.00 |' in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved['words'] == ['left', 'leftmost']
    assert saved['results'][str(path)]['with']['sentences'] == 2


def test_bad_record_is_named_with_its_line(tmp_path, capsys):
    path = tmp_path / 'per_sentence_val.jsonl'
    path.write_text(json.dumps(RECORDS[0]) + '\n{"sentence": "x"}\n')
    assert the_tool().main([str(path)]) == 2
    err = capsys.readouterr().err
    assert f'{path}:2' in err and 'intersection' in err
