"""tools/analysis_tools/benchmark_gpu.sh: the one-command GPU measurement.

No GPU here: the script's --dry-run runs every leg (synthetic data,
loader, tools/train.py training of both configs, the benchmark at two batch
sizes, the per-module profile) on the CPU at toy size, so that the first
GPU run does not fail on a typo; the GPU run's configs (ViT-B, 448 px) are
checked up to what tools/train.py checks before building the Runner.
"""
import json
import os
import os.path as osp
import subprocess
import time

import pytest

from helpers.tool_runner import REPO, load_tool

bg = load_tool('analysis_tools/benchmark_gpu.py')


@pytest.mark.integration
def test_dry_run_writes_the_json_and_the_markdown_table(tmp_path):
    out = tmp_path / 'bgpu'
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', 'tools/analysis_tools/benchmark_gpu.sh', '--dry-run', '--out-dir', str(out),
         '--peak-tflops', '1'],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    data = json.loads((out / 'benchmark_gpu.json').read_text())
    legs = {leg['name']: leg for leg in data['legs']}
    assert list(legs) == ['environment', 'data', 'loader', 'models', 'flops',
                          'train:sera:b2', 'train:detris:b2', 'train:sera:b4',
                          'train:detris:b4', 'benchmark:b2', 'benchmark:b4', 'profile']
    assert all(leg['status'] == 'ok' for leg in legs.values()), legs
    assert data['settings']['dry_run'] and data['environment']['peak_tflops'] == 1.0
    assert data['environment']['stack']['mmcv_compiled_ops'] is True  # the project's venv
    assert data['data']['images'] == 8 + 6
    assert data['loader']['samples_per_s'] > 0 and data['loader']['batch'] == 2
    assert data['flops']['batch'] == 2
    assert list(data['train']) == ['sera b2', 'detris b2', 'sera b4', 'detris b4']
    for key, train in data['train'].items():
        name, batch = key.split(' ')[0], int(key.split(' b')[1])
        assert train['batch'] == batch and f'train_{name}_b{batch}' in train['log']
        assert train['samples_per_s'] > 0 and train['step_ms'] > 0
        assert 0 <= train['data_wait_share'] < 1
        assert train['iters'] == 6 and train['windows'] == 2
        assert not train['stopped_at_budget']
        assert 'tools/train.py' in train['command'] and train['amp'] is None  # fp32 on the CPU
        # MFU from the flops leg: FLOPs per sample x samples/s / peak
        flops = data['flops'][name]['train_flops_per_sample']
        assert flops > 0 and train['flops_per_sample'] == flops
        assert train['mfu'] == pytest.approx(flops * train['samples_per_s'] / 1e12)
        assert data['mfu'][key]['mfu'] == train['mfu']
    # pretrained references switched off in the dumped configs
    assert data['train']['sera b4']['disabled_pretrained'] == []  # the toy has none
    for key, batch in (('b2', 2), ('b4', 4)):
        report = data['benchmark'][key]
        assert report['settings']['batch_size'] == batch
        assert report['settings']['amp'] == 'bf16'  # autocast on the CPU too
        assert [r['name'] for r in report['results']] == ['detris', 'sera']
        for r in report['results']:
            thr = r['throughput']
            assert thr['train_samples_per_s'] > 0 and thr['forward_samples_per_s'] > 0
            assert thr['train_mfu'] == pytest.approx(thr['train_flops_per_s'] / 1e12)
            assert r['memory']['train_peak_bytes'] > 0
    groups = {r['group'] for r in data['profile']['sera']}
    assert {'text_encoder', 'text_encoder.adapters', 'backbone', 'backbone.adapters', 'neck',
            'neck.fusion', 'decoder', 'decode_head', 'loss', 'total'} <= groups
    md = (out / 'benchmark_gpu.md').read_text()
    for heading in ('## Training (tools/train.py)', '## Forward+backward without the optimiser',
                    '## Time split of one training step', '## Data loader against the training '
                    'step', '## Legs'):
        assert heading in md, heading
    assert '| sera | 4 |' in md and '| neck.fusion |' in md and 'DRY RUN' in md
    assert md.count('| sera | 4 |') == 2  # a training row and a benchmark row
    assert '- detris b4: step' in md and 'mmcv 2.1.0 (compiled ops)' in md
    assert md in proc.stdout  # printed too


def test_gpu_leg_configs_pass_train_py_checks(tmp_path):
    """The dumped training configs of the GPU run (ViT-B, 448 px, the
    synthetic set) load as tools/train.py loads them and have pretrained
    weights off."""
    from sera_mm.datasets.synthetic import generate_synthetic_refer
    from sera_mm.utils.config import load_config
    root = str(tmp_path / 'data')
    generate_synthetic_refer(root, num_images=dict(train=2, val=1, testA=1, testB=1))
    settings = bg.settings_of(bg.parse_args([]))
    assert settings['img_size'] == 448 and settings['amp'] and settings['compile']
    assert settings['train_batches'] == (16, 32) and settings['budget_s'] == 450
    for name, config in settings['configs'].items():
        facts = bg.train_config(config, settings, root, str(tmp_path / name), iters=300,
                                batch=16)
        assert set(facts['disabled_pretrained']) == {'model.text_encoder.pretrained',
                                                     'model.backbone.init_cfg'}, name
        cfg = load_config(facts['path'])
        assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 300
        loader = cfg.train_dataloader
        assert loader.batch_size == 16 and loader.num_workers == 8
        assert loader.sampler.type == 'InfiniteSampler'
        assert loader.dataset.data_root.rstrip('/') == root
        assert cfg.val_dataloader is None and cfg.default_hooks.checkpoint is None
        letterbox = [t for t in loader.dataset.pipeline if t.type == 'Letterbox']
        assert [t.scale for t in letterbox] == [448]
        assert cfg.get('compile') is None
    facts = bg.train_config(settings['configs']['sera'], settings, root,
                            str(tmp_path / 'c'), iters=10, batch=32, compile=True)
    assert load_config(facts['path']).compile is True


def test_training_summary_skips_the_warm_up_windows():
    records = [dict(iter=10, time=2.0, data_time=0.5, memory=100),
               dict(iter=20, time=0.5, data_time=0.05, memory=300, loss=1.0),
               dict(iter=30, time=0.4, data_time=0.04, memory=200),
               dict(iter=40, time=0.6, data_time=0.06, memory=200, loss=0.5)]
    s = bg.summarise_training(records, batch=16, skip_iters=10, wall_s=9.0)
    assert s['step_ms'] == pytest.approx(500) and s['samples_per_s'] == pytest.approx(32)
    assert s['data_wait_share'] == pytest.approx(0.1) and s['windows'] == 3
    assert s['peak_memory_mib'] == 300 and s['loss_last'] == 0.5 and s['iters'] == 40
    with pytest.raises(ValueError, match='no logged iteration'):
        bg.summarise_training(records, batch=16, skip_iters=40, wall_s=1.0)


def test_a_leg_past_the_budget_is_skipped_and_a_failing_one_recorded(tmp_path):
    settings = bg.settings_of(bg.parse_args(['--dry-run', '--budget-s', '100']))
    report = bg.Report(str(tmp_path), settings)
    assert report.leg('fine', lambda: 3) == 3
    assert report.leg('late', lambda: 4, needs_s=1000) is None

    def broken():
        raise RuntimeError('a typo')

    assert report.leg('broken', broken) is None
    saved = json.loads((tmp_path / 'benchmark_gpu.json').read_text())
    assert [(leg['name'], leg['status']) for leg in saved['legs']] == [
        ('fine', 'ok'), ('late', 'skipped'), ('broken', 'failed')]
    assert 'a typo' in saved['legs'][2]['error']
    assert '| late | skipped |' in (tmp_path / 'benchmark_gpu.md').read_text()
    assert osp.isfile(tmp_path / 'benchmark_gpu.md')


def test_the_budget_counts_from_the_shell_scripts_start(tmp_path, monkeypatch):
    """benchmark_gpu.sh exports SERA_BENCH_T0 before installing the stack:
    the time the install took is spent from the same budget."""
    monkeypatch.setenv('SERA_BENCH_T0', str(time.time() - 95))
    settings = bg.settings_of(bg.parse_args(['--dry-run', '--budget-s', '100']))
    report = bg.Report(str(tmp_path), settings)
    assert 95 <= report.elapsed() < 99 and report.data['before_s'] >= 95
    assert report.leg('needs ten', lambda: 1, needs_s=10) is None


def test_mfu_from_the_flops_leg_else_the_benchmark_at_the_legs_batch():
    leg = dict(samples_per_s=100.0, batch=32)
    data = dict(environment=dict(peak_tflops=1000.0), compile=None, flops=None,
                train={'sera b32': dict(leg), 'detris b32': None}, benchmark={})
    assert bg.compute_mfu(data) is None  # no FLOPs known yet
    data['benchmark']['b32'] = dict(results=[
        dict(name='sera', throughput=dict(train_flops_per_sample=2e11))])
    mfu = bg.compute_mfu(data)
    assert mfu['sera b32']['mfu'] == pytest.approx(2e11 * 100 / 1e15)
    assert mfu['sera b32']['flops_from'] == 'benchmark b32'
    data['flops'] = dict(batch=16, sera=dict(train_flops_per_sample=3e11))
    mfu = bg.compute_mfu(data)
    assert data['train']['sera b32']['mfu'] == pytest.approx(3e11 * 100 / 1e15)
    assert mfu['sera b32']['flops_from'] == 'flops leg, batch 16' and 'detris b32' not in mfu


@pytest.mark.integration
def test_a_training_leg_past_the_budget_is_stopped_and_summarised(tmp_path, synthetic_refer):
    settings = bg.settings_of(bg.parse_args(['--dry-run']))
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as m:
        m.setenv('OMP_NUM_THREADS', '1')
        train = bg.run_training('sera', settings['configs']['sera'], settings, synthetic_refer,
                                str(tmp_path), iters=100000, batch=2, timeout=60)
    assert time.perf_counter() - start < 90
    assert train['stopped_at_budget'] and train['windows'] >= 1 and train['samples_per_s'] > 0
    assert train['iters'] < 100000
    assert '| sera (stopped at the budget) | 2 |' in bg.format_markdown(dict(
        environment={}, settings=dict(settings, dry_run=True), train={'sera b2': train},
        benchmark={}, profile={}, legs=[]))
