"""tools/train.py then tools/test.py on the tiny synthetic config, end to end."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
from collections import defaultdict

import pytest
from mmengine.config import Config

from sera_mm.datasets.refer_pickle import load_refer_pickle
from helpers.checkpoint_io import load_runner_checkpoint
from helpers.tool_runner import (REPO, TINY_CONFIG, data_options, explain, load_tool, logged_metric,
                                 run_tool, weights_only_warnings)

ITERS_PER_EPOCH = 4  # 28 training referents of the fixture, batches of 8


def expected_test_sentences(data_root: str) -> dict:
    """``{(ref_id, sent_id): (image_id, sentence)}`` of the tiny config's test
    split, read from the REFER files of ``data_root``."""
    ds = Config.fromfile(osp.join(REPO, TINY_CONFIG)).test_dataloader.dataset
    refs = load_refer_pickle(osp.join(data_root, ds.split_file))
    return {(r['ref_id'], s['sent_id']): (r['image_id'], s['sent'])
            for r in refs if r['split'] == ds.split for s in r['sentences']}


def run_test_tool(trained, tmp_path, *flags: str) -> tuple:
    """tools/test.py on the trained checkpoint; returns (process, records)."""
    out_dir = tmp_path / 'records'
    proc = run_tool('test.py', [TINY_CONFIG, trained.checkpoint, '--work-dir',
                                str(tmp_path / 'work'), '--out', str(out_dir),
                                '--splits', 'val', *flags],
                    data_options(trained.data_root))
    assert proc.returncode == 0, explain(proc)
    files = glob.glob(str(out_dir / '*.jsonl'))
    assert len(files) == 1, f'expected one records file in {out_dir}, got {files}'
    with open(files[0], encoding='utf-8') as f:
        records = [json.loads(line) for line in f if line.strip()]
    return proc, records


@pytest.mark.integration
def test_train_tool_writes_checkpoint(tiny_trained):
    out = tiny_trained.output
    assert f'Epoch(train) [1][{ITERS_PER_EPOCH}/{ITERS_PER_EPOCH}]' in out, out[-3000:]
    assert 'Epoch(train) [2]' not in out
    assert osp.isfile(tiny_trained.checkpoint)
    with open(osp.join(tiny_trained.work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == tiny_trained.checkpoint
    ckpt = load_runner_checkpoint(tiny_trained.checkpoint)
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (1, ITERS_PER_EPOCH)
    assert any(k.startswith('neck.fusions.') for k in ckpt['state_dict'])
    assert ckpt['optimizer']['state'], 'the optimizer saved no state'
    assert not weights_only_warnings(out)


@pytest.mark.integration
def test_checkpoint_loads_in_fresh_process(tiny_trained):
    """What tools/test.py and --resume do first: torch.load of a Runner
    checkpoint with weights_only=True, in a process where nothing but
    ``register_all_modules`` ran before (no HistoryBuffer built yet)."""
    code = ('import sys, torch, sera_mm; sera_mm.register_all_modules(); '
            'ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=True); '
            'print("iter", ckpt["meta"]["iter"])')
    proc = subprocess.run([sys.executable, '-c', code, tiny_trained.checkpoint], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f'iter {ITERS_PER_EPOCH}' in proc.stdout


@pytest.mark.integration
def test_test_tool_writes_one_record_per_sentence(tiny_trained, tmp_path):
    proc, records = run_test_tool(tiny_trained, tmp_path)
    expected = expected_test_sentences(tiny_trained.data_root)

    keys = [(r['ref_id'], r['sent_id']) for r in records]
    assert len(records) == len(expected)
    assert sorted(keys) == sorted(expected), 'records differ from the test sentences'
    # the sentences of one image are separate records
    by_image = defaultdict(list)
    for key, (image_id, _) in expected.items():
        by_image[image_id].append(key)
    image_id, image_keys = max(by_image.items(), key=lambda kv: len(kv[1]))
    assert len(image_keys) >= 2, 'the fixture has no image with two sentences'
    assert set(image_keys) <= set(keys)

    for r in records:
        assert r['key'] == f"{r['ref_id']}/{r['sent_id']}"
        assert r['sentence'] == expected[(r['ref_id'], r['sent_id'])][1]
        assert 0 <= r['intersection'] <= r['union']
        assert r['iou'] == (r['intersection'] / r['union'] if r['union'] else 1.0)
    # the printed mIoU (percent, 4 decimals) is the mean of the records' IoUs
    miou = logged_metric(proc.output, 'mIoU', 'test')
    assert miou == pytest.approx(100 * sum(r['iou'] for r in records) / len(records),
                                 abs=6e-5)
    assert 'mIoU' in proc.output and 'oIoU' in proc.output
    assert not weights_only_warnings(proc.output)


@pytest.mark.integration
def test_test_tool_shuffle_sentences(tiny_trained, tmp_path):
    proc, records = run_test_tool(tiny_trained, tmp_path, '--shuffle-sentences')
    expected = expected_test_sentences(tiny_trained.data_root)
    for name in ('mIoU', 'oIoU', 'Prec@0.5', 'Prec@0.9'):
        assert 0.0 <= logged_metric(proc.output, name, 'test') <= 100.0
    # every sentence is used once, but moved to other samples
    sent_ids = sorted(r['sent_id'] for r in records)
    assert sent_ids == sorted(sent_id for _, sent_id in expected)
    own = {key for key in expected}
    kept = sum((r['ref_id'], r['sent_id']) in own for r in records)
    assert kept < len(records) / 2, f'{kept} of {len(records)} samples kept their sentence'
    text_of = {sent_id: text for (_, sent_id), (_, text) in expected.items()}
    assert all(r['sentence'] == text_of[r['sent_id']] for r in records)


@pytest.mark.integration
def test_show_dir_draws_every_sentence_of_every_split(tiny_trained, tmp_path):
    """--show-dir writes one picture per sentence, named by split and
    sent_id, so the sentences of one image do not overwrite each other."""
    out_dir, show_dir = tmp_path / 'out', tmp_path / 'vis'
    proc = run_tool('test.py', [TINY_CONFIG, tiny_trained.checkpoint, '--work-dir',
                                str(tmp_path / 'work'), '--out', str(out_dir),
                                '--show-dir', str(show_dir), '--splits', 'val', 'testA'],
                    data_options(tiny_trained.data_root))
    assert proc.returncode == 0, explain(proc)
    expected = set()
    for split in ('val', 'testA'):
        with open(out_dir / f'per_sentence_{split}.jsonl') as f:
            records = [json.loads(line) for line in f]
        assert records
        expected |= {(split, r['sent_id']) for r in records}
    pictures = glob.glob(str(show_dir / '**' / '*.png'), recursive=True)
    drawn = set()
    for path in pictures:
        match = re.fullmatch(r'test_(val|testA)_SYN_\w+?_sent(\d+)_\d+\.png',
                             osp.basename(path))
        assert match, f'unexpected picture name {path}'
        drawn.add((match.group(1), int(match.group(2))))
    assert len(pictures) == len(expected)      # nothing drawn twice, nothing overwritten
    assert drawn == expected


@pytest.mark.parametrize('request_, bf16, expected', [
    ('auto', True, ('float16', 'dynamic')),       # the DETRIS config's amp_dtype wins
    ('bfloat16', True, ('bfloat16', dict(enabled=False))),  # no loss scaling
    ('float16', False, ('float16', 'dynamic')),
])
def test_amp_follows_the_config_then_the_request(request_, bf16, expected):
    enable_amp = load_tool('train.py').enable_amp
    cfg = Config.fromfile(osp.join(REPO, 'configs/detris/detris_dinov2-b_refcoco.py'))
    enable_amp(cfg, request_, bf16)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert (cfg.optim_wrapper.dtype, cfg.optim_wrapper.get('loss_scale')) == expected
    # without amp_dtype, 'auto' picks bf16 where the device has it
    sera = Config.fromfile(osp.join(REPO, 'configs/synthetic/sera-tiny_synthetic.py'))
    sera.amp_dtype = None
    enable_amp(sera, 'auto', True)
    assert sera.optim_wrapper.dtype == 'bfloat16'
    assert sera.optim_wrapper.loss_scale == dict(enabled=False)
