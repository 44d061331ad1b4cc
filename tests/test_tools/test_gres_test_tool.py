"""tools/test.py on a GRES config prints GRES's metrics per split and writes
each sentence's no-target decision."""
import json
import os.path as osp

import pytest
import torch

from helpers.tool_runner import data_options, explain, run_tool

pytestmark = pytest.mark.integration

GRES_TINY = 'configs/gres/sera-tiny_synthetic-gres.py'
COLUMNS = ('gIoU', 'cIoU', 'N-acc', 'T-acc', 'Pr@0.7', 'Pr@0.8', 'Pr@0.9')


def test_test_tool_prints_gres_metrics_per_split(tmp_path):
    from sera_mm.apis import init_model
    from sera_mm.datasets.synthetic import generate_synthetic_refer
    root = str(tmp_path / 'data')
    images = dict(train=4, val=4, testA=4, testB=4)
    generate_synthetic_refer(root, num_images=images, seed=3)
    generate_synthetic_refer(root, num_images=images, seed=3, ref_format='grefcoco')
    torch.manual_seed(0)
    checkpoint = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=init_model(GRES_TINY).state_dict(), meta=dict(epoch=0)),
               checkpoint)
    out = str(tmp_path / 'results')
    proc = run_tool('test.py', [GRES_TINY, checkpoint, '--work-dir', out, '--out', out],
                    data_options(root))
    assert proc.returncode == 0, explain(proc)
    header = next(line for line in proc.output.splitlines() if '| split' in line)
    assert [c.strip() for c in header.strip('|').split('|')][2:] == list(COLUMNS)
    with open(osp.join(out, 'test_results.json')) as f:
        table = json.load(f)
    assert table['columns'] == list(COLUMNS)
    assert set(table['splits']) == {'val', 'testA', 'testB'}
    for split, row in table['splits'].items():
        assert all(name in row for name in COLUMNS), split
        with open(row['per_sentence']) as f:
            records = [json.loads(line) for line in f]
        assert len(records) == row['sentences']
        assert {r['no_target'] for r in records} == {True, False}, split
        assert all(0. <= r['no_target_score'] <= 1. for r in records)
        # the presence head's probability above test_cfg.no_target_threshold
        # (0.5) empties the mask; an empty mask is also "no target"
        assert all(r['pred_no_target'] or r['no_target_score'] <= 0.5 for r in records)
        assert all(r['intersection'] == 0 for r in records if r['pred_no_target'])
