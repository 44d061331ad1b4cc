"""tools/analysis_tools/paper_tables.py: the paper's tables for finished
runs, and the READMEs' paper numbers and k against the tool's and the
configs'."""
import glob
import json
import os
import os.path as osp
import re

from mmengine.config import Config

from helpers.tool_runner import REPO, load_tool

tool = load_tool('analysis_tools/paper_tables.py')


def _config_files() -> dict:
    """config name -> path, for the paper configs and the ablations."""
    paths = glob.glob(osp.join(REPO, 'configs', 'sera', '*.py'))
    paths += glob.glob(osp.join(REPO, 'configs', 'ablations', '*.py'))
    return {osp.splitext(osp.basename(p))[0]: p for p in paths}


def _write_run(folder, **splits):
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(folder, 'test_results.json'), 'w') as f:
        json.dump(dict(splits={name: dict(mIoU=m, oIoU=o, sentences=10)
                               for name, (m, o) in splits.items()}), f)


def test_every_cell_of_the_paper_tables_has_a_config():
    configs = _config_files()
    tables = tool.paper_tables()
    assert [t.title.split(',')[0] for t in tables] == ['Table 1', 'Table 2', 'Top-k', 'Top-k',
                                                      'Top-k']
    rows = [(t.title, name) for t in tables for name, _ in t.rows]
    assert len(rows) == 1 + 3 + 3 * 4
    for table in tables:
        for name, cells in table.rows:
            for cell in cells:
                assert any(c in configs for c in cell.configs), (table.title, name, cell)


def test_measured_means_stand_beside_the_papers_numbers(tmp_path, capsys):
    root = tmp_path / 'paper'
    # run_ablations.py's layout, two seeds
    _write_run(root / 'sera_dinov2-b_top2_refcoco' / 'seed0' / 'test',
               val=(70.0, 60.0), testA=(71.0, 61.0), testB=(72.0, 62.0))
    _write_run(root / 'sera_dinov2-b_top2_refcoco' / 'seed1' / 'test',
               val=(72.0, 62.0), testA=(73.0, 63.0), testB=(74.0, 64.0))
    # tools/test.py's default work dir of the paper config, and its Top-4 twin: pooled
    _write_run(root / 'sera_dinov2-b_refcoco', val=(75.0, 70.0), testA=(1.0, 1.0),
               testB=(1.0, 1.0))
    _write_run(root / 'sera_dinov2-b_top4_refcoco' / 'seed0' / 'test', val=(77.0, 72.0),
               testA=(3.0, 3.0), testB=(3.0, 3.0))
    # G-Ref: val(g) from the google run, val(u) and test(u) from the umd run
    _write_run(root / 'sera_dinov2-b_top1_refcocog-google' / 'seed0' / 'test',
               val=(50.0, 40.0))
    _write_run(root / 'sera_dinov2-b_top1_refcocog-umd' / 'seed0' / 'test',
               val=(51.0, 41.0), test=(52.0, 42.0))
    _write_run(root / 'sera_dinov2-b_baseline_refcoco+' / 'seed0' / 'test',
               val=(60.0, 55.0), testA=(61.0, 56.0), testB=(62.0, 57.0))
    out_file = tmp_path / 'paper.md'
    assert tool.main([str(root), '--out', str(out_file)]) == 0
    text = capsys.readouterr().out
    assert out_file.read_text() == text
    lines = text.splitlines()
    assert ('| k = 2 | 71.00 [76.47] | 61.00 [74.65] | 72.00 [78.17] | 62.00 [76.91] '
            '| 73.00 [73.55] | 63.00 [71.23] |') in lines
    assert ('| k = 4 | 76.00 [76.50] | 71.00 [74.74] | 2.00 [78.20] | 2.00 [77.09] '
            '| 2.00 [73.73] | 2.00 [71.32] |') in lines
    assert ('| k = 1 | - [75.46] | - [73.32] | - [77.72] | - [76.31] | - [72.80] '
            '| - [69.15] |') in lines
    assert ('| k = 1 | 50.00 [66.22] | 40.00 [61.80] | 51.00 [66.61] | 41.00 [63.61] '
            '| 52.00 [67.58] | 42.00 [65.72] |') in lines
    assert '| Baseline | - [74.90] | 60.00 [68.70] | - [65.10] |' in lines
    assert '| + SERA-Adapter + SERA-Fusion (SERA) | 76.00 [76.50] | - [70.40] | - [66.62] |' \
        in lines
    assert lines[lines.index('### Table 1, SERA (mIoU)') + 4].startswith(
        '| SERA | 76.00 [76.5] | 2.00 [78.2] | 2.00 [73.7] | - [70.4] |')
    assert 'sera_dinov2-b_top2_refcoco: 2' in text and 'sera_dinov2-b_refcoco: 1' in text


def test_without_runs_it_prints_the_papers_numbers_and_refuses_a_missing_folder(
        tmp_path, capsys):
    assert tool.main([]) == 0
    text = capsys.readouterr().out
    assert '| Baseline | - [74.90] | - [68.70] | - [65.10] |' in text
    assert 'Runs found: none.' in text
    assert tool.main([str(tmp_path / 'nothing')]) == 2
    assert f'{tmp_path / "nothing"} is not a folder' in capsys.readouterr().err


_CELL = re.compile(r'^(\d+\.\d\d) \((\d+\.\d\d)\)$')
_LINK = re.compile(r'\[[^\]]*\]\(([^)]+)\)')


def _table_rows(md_file: str) -> list:
    """The cells of every Markdown table row with a link, and the file."""
    rows = []
    with open(osp.join(REPO, md_file)) as f:
        for line in f:
            if line.startswith('|') and '](' in line:
                rows.append([c.strip() for c in line.strip().strip('|').split('|')])
    return rows


def _config_of(cell: str, md_file: str) -> str:
    path = osp.normpath(osp.join(REPO, osp.dirname(md_file), _LINK.search(cell).group(1)))
    assert osp.isfile(path), path
    return path


def test_readme_numbers_and_k_are_the_papers_for_each_configs_setting():
    """Each README row with a config and mIoU (oIoU) cells: its numbers are
    the paper's for that config's setting (the tool's table) and its k is
    the config's own top_k."""
    checked = set()
    for md_file in ('configs/sera/README.md', 'configs/ablations/README.md'):
        for cells in _table_rows(md_file):
            numbers = [_CELL.match(c) for c in cells if _CELL.match(c)]
            if not numbers:
                continue
            link = next(c for c in cells if _LINK.search(c))
            path = _config_of(link, md_file)
            name = osp.splitext(osp.basename(path))[0]
            expected = tool.paper_numbers(name)
            assert [(float(m.group(1)), float(m.group(2))) for m in numbers] == \
                list(expected.values()), (md_file, name)
            k = next(int(c) for c in cells if c.isdigit())
            assert Config.fromfile(path).model.neck.fusion_cfg.router.top_k == k, (md_file, name)
            checked.add((md_file, name))
    # the paper configs and the Top-2 trade-off in the SERA README; 16 Top-k rows
    assert sum(f == 'configs/sera/README.md' for f, _ in checked) == 8
    assert sum(f == 'configs/ablations/README.md' for f, _ in checked) == 16


def test_ablations_readme_maps_the_component_table_to_its_configs():
    found = {}
    readme = 'configs/ablations/README.md'
    for cells in _table_rows(readme):
        for cell in cells:
            match = re.match(r'^\[[^\]]*\]\([^)]+\) (\d+\.\d\d)$', cell)
            if match:
                name = osp.splitext(osp.basename(_config_of(cell, readme)))[0]
                found[name] = float(match.group(1))
    expected = {}
    for row, values in tool.COMPONENTS.items():
        for data, value in values.items():
            expected[tool.configs_of(row, data)[0]] = value
    assert found == expected
