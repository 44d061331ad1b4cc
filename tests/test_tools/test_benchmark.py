"""tools/analysis_tools/benchmark.py on a tiny SERA.

No timing assertions: the tests check the fields, that ratios come from the
same run's times, that pretrained references are switched off, that the
synthetic batch goes through the real loss path, and the memory and
profile bookkeeping on hand-checkable cases.
"""
import json

import pytest
import torch
from torch import nn

from helpers.tool_runner import load_tool

bm = load_tool('analysis_tools/benchmark.py')
IMG = 32

# A tiny SERA (2-layer DINOv2 of width 32, patch 8; 1-layer CLIP text tower
# of width 32; SERA-Adapter, SERA-Fusion Top-2 on 2 levels), with a
# pretrained file that does not exist, so that building proves it was
# switched off. The text encoder's `pretrained` is tested by the walk alone:
# open_clip's text tower needs a model_name or text_cfg either way.
TINY_CFG = """
model = dict(
    type='ReferringSegmentor',
    data_preprocessor=dict(type='mmseg.SegDataPreProcessor',
                           mean=[122.8, 116.7, 104.1], std=[68.5, 66.6, 70.3],
                           bgr_to_rgb=True, size=(448, 448)),
    text_encoder=dict(type='OpenCLIPTextEncoder',
                      text_cfg=dict(context_length=17, vocab_size=49408, width=32,
                                    heads=2, layers=1),
                      embed_dim=32, context_length=7, frozen=True),
    backbone=dict(type='DINOv2',
                  arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                            feedforward_channels=64),
                  patch_size=8, img_size=64, out_indices=(0, 1),
                  trainable='bitfit_ln',
                  adapter_cfg=dict(type='SERAAdapter', channels=16, text_channels=32,
                                   sentence_channels=32, num_heads=2),
                  adapter_indices=(1, ),
                  init_cfg=dict(type='Pretrained', checkpoint='/nonexistent/dinov2.pth')),
    neck=dict(type='TextGatedNeck', in_channels=[32, 32], channels=32, text_channels=32,
              fusion_cfg=dict(type='SERAFusion',
                              router=dict(type='NoisyTopKRouter', top_k=2),
                              expert_cfgs=dict(context=dict(num_heads=2)))),
    decoder=dict(type='VisionLanguageDecoder', num_layers=1, channels=32,
                 text_channels=32, num_heads=2, feedforward_channels=64),
    decode_head=dict(type='DynamicConvHead', in_channels=32, channels=16,
                     text_channels=32),
    moe_loss=dict(type='MoERegularizationLoss'),
    test_cfg=dict(threshold=0.35))
"""


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'tiny_sera.py'
    path.write_text(TINY_CFG)
    return str(path)


def build_case(config, name, **options):
    model, disabled = bm.build_benchmark_model(config, cfg_options=options or None,
                                               img_size=IMG)
    case = bm.BenchmarkCase(name, model, disabled, config)
    case.batch = bm.make_synthetic_batch(model, 2, IMG, seed=0)
    return case


def test_build_switches_pretrained_off_and_resizes_the_preprocessor(tiny_config):
    model, disabled = bm.build_benchmark_model(tiny_config, img_size=IMG)
    assert disabled == ['model.backbone.init_cfg']
    assert tuple(model.data_preprocessor.size) == (IMG, IMG)
    assert model.training
    params = bm.count_parameters(model)
    expected_total = sum(p.numel() for p in model.parameters())
    expected_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert params['total'] == expected_total
    assert params['trainable'] == expected_trainable
    # frozen text encoder, BitFit + LN backbone: some but not all trainable
    assert 0 < params['trainable'] < params['total']


def test_synthetic_batch_fits_the_loss_and_predict_paths(tiny_config):
    case = build_case(tiny_config, 'sera')
    batch = case.batch
    assert len(batch['inputs']) == 2
    for img, ds in zip(batch['inputs'], batch['data_samples']):
        assert img.shape == (3, IMG, IMG) and img.dtype == torch.uint8
        assert ds.gt_sem_seg.data.shape == (1, IMG, IMG)
        assert set(ds.gt_sem_seg.data.unique().tolist()) == {0, 1}
        tokens = ds.text_tokens
        assert tokens.shape == (7, ) and tokens[0] == 49406
        assert tokens.argmax() > 0 and tokens.max() == 49407
        assert ds.metainfo['letterbox']['ori_shape'] != (IMG, IMG)
    # The letterbox pads: the two aspect ratios give different padding.
    pads = [ds.metainfo['letterbox']['pad'] for ds in batch['data_samples']]
    assert pads[0] != pads[1] and all(sum(p) > 0 for p in pads)

    model = case.model
    bm.train_step(model, batch)
    # the backward of the summed losses reached the head, the adapter and
    # the backbone's biases (BitFit), not the frozen weights or text encoder
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.decode_head.parameters())
    adapter = model.backbone.adapters['1']
    assert all(p.grad is not None for p in adapter.parameters() if p.requires_grad)
    block = model.backbone.layers[0]
    assert block.attn.qkv.bias.grad is not None and block.attn.qkv.weight.grad is None
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert bm.routing_counts(model) is not None
    assert sum(bm.routing_counts(model)) == 2 * 2 * 2  # B x k x levels
    bm.forward_step(model, batch, mode='predict')
    assert model.training  # put back in train mode


def test_run_benchmark_fields_and_ratios_come_from_the_same_run(tiny_config):
    cases = [build_case(tiny_config, 'top2'),
             build_case(tiny_config, 'top1', **{'model.neck.fusion_cfg.router.top_k': 1})]
    lines = []
    report = bm.run_benchmark(cases, repeats=3, warmup=1, memory=True, log=lines.append)
    assert len(lines) == 4 and lines[0].startswith('warm-up 1/1')
    settings = report['settings']
    assert settings['reference'] == 'top2' and settings['batch_size'] == 2
    assert settings['input_shape'] == [3, IMG, IMG]
    assert 'profiler' in settings['memory_method']
    ref, other = report['results']
    assert [ref['name'], other['name']] == ['top2', 'top1']
    for r in (ref, other):
        for mode in ('train', 'forward'):
            t = r[mode]
            assert len(t['times_ms']) == 3 and all(x > 0 for x in t['times_ms'])
            assert t['min_ms'] <= t['q25_ms'] <= t['median_ms'] <= t['q75_ms']
            assert t['median_ms'] == pytest.approx(sorted(t['times_ms'])[1])
        assert r['memory']['train_peak_bytes'] > 0 and r['memory']['forward_peak_bytes'] > 0
    # the reference's ratios are exactly 1; the other's are its own times
    # over the reference's times of the same run
    for mode in ('train', 'forward'):
        assert ref[mode]['ratio'] == 1.0 and ref[mode]['paired_ratio'] == 1.0
        mine, theirs = other[mode]['times_ms'], ref[mode]['times_ms']
        assert other[mode]['ratio'] == pytest.approx(
            sorted(mine)[1] / sorted(theirs)[1])
        paired = sorted(a / b for a, b in zip(mine, theirs))
        assert other[mode]['paired_ratio'] == pytest.approx(paired[1])
    assert other['memory']['train_peak_ratio'] == pytest.approx(
        other['memory']['train_peak_bytes'] / ref['memory']['train_peak_bytes'])
    # same architecture: same parameters; routing counts B x k x levels x rounds
    assert other['params'] == ref['params']
    assert other['params_ratio'] == dict(trainable=1.0, total=1.0)
    assert sum(ref['routing']) == 2 * 2 * 2 * 3
    assert sum(other['routing']) == 2 * 1 * 2 * 3
    assert ref['disabled_pretrained'] == ['model.backbone.init_cfg']
    # FLOPs of one untimed step per mode, with that step's routing
    for r, k in ((ref, 2), (other, 1)):
        f = r['flops']
        assert f['train'] > f['forward'] > 0
        assert sum(f['train_routing']) == 2 * k * 2
        assert sum(f['forward_routing']) == 2 * k * 2
    assert other['flops']['train_ratio'] == pytest.approx(
        other['flops']['train'] / ref['flops']['train'])
    assert 'flop_counter' in settings['flops_method']
    assert report['pairwise']['train']['top1']['top2'] == other['train']['paired_ratio']
    assert report['pairwise']['forward']['top2']['top1'] == pytest.approx(sorted(
        a / b for a, b in zip(ref['forward']['times_ms'], other['forward']['times_ms']))[1])
    table = bm.format_benchmark_table(report)
    assert 'top1' in table and 'samples per expert' in table


def test_run_benchmark_rejects_bad_arguments(tiny_config):
    case = build_case(tiny_config, 'a')
    with pytest.raises(ValueError, match='names must differ'):
        bm.run_benchmark([case, case], repeats=1, warmup=0, memory=False)
    with pytest.raises(ValueError, match='forward_mode'):
        bm.run_benchmark([case], forward_mode='loss')
    with pytest.raises(ValueError, match='needs a batch'):
        bm.run_benchmark([bm.BenchmarkCase('b', case.model)], repeats=1)


def test_cpu_peak_memory_counts_the_allocations_of_the_step():
    """Two 4 MiB buffers alive together, then freed: peak 8 MiB, whatever
    was allocated before the step."""
    keep = torch.empty(2**22, dtype=torch.uint8)  # live before: not counted

    def step():
        a = torch.ones(2**22, dtype=torch.uint8)
        b = torch.ones(2**22, dtype=torch.uint8)
        del a, b
        c = torch.ones(2**21, dtype=torch.uint8)
        del c

    peak = bm.measure_peak_memory(step, torch.device('cpu'))
    assert peak == 2 * 2**22
    del keep


def test_count_flops_counts_matmuls_forward_and_backward():
    a = torch.randn(8, 16, requires_grad=True)
    b = torch.randn(16, 4)
    assert bm.count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    # backward of a @ b w.r.t. a: one more matmul of the same size
    assert bm.count_flops(lambda: (a @ b).sum().backward()) == 2 * 2 * 8 * 16 * 4
    # a module fed a view of a leaf under no_grad (torch's module tracker
    # would fail on it) is counted too
    linear = nn.Linear(16, 4, bias=False)
    with torch.no_grad():
        assert bm.count_flops(lambda: linear(a.view(8, 16))) == 2 * 8 * 16 * 4


class _Toy(nn.Module):
    """A segmentor-shaped toy: the head is reached through ``loss``, which
    calls ``self.forward``, as ReferringSegmentor does with its head."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(64, 64)
        self.decode_head = _ToyHead()


class _ToyHead(nn.Module):

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(64, 64)
        self.loss_decode = _ToyLoss()

    def forward(self, x):
        return self.proj(x).relu()

    def loss(self, x):
        return self.loss_decode(self.forward(x))


class _ToyLoss(nn.Module):

    def forward(self, x):
        return (x**2).mean()


def test_default_profile_groups_and_scopes_catch_method_calls(monkeypatch):
    model = _Toy()
    groups = bm.default_profile_groups(model)
    assert list(groups) == ['backbone', 'decode_head', 'loss']
    assert groups['loss'] == [model.decode_head.loss_decode]

    def toy_step(m, batch, amp=False):
        m.zero_grad(set_to_none=True)
        m.decode_head.loss(m.backbone(batch['x'])).backward()

    monkeypatch.setattr(bm, 'train_step', toy_step)
    rows = bm.profile_modules(model, dict(x=torch.randn(256, 64)), warmup=1)
    by = {r['group']: r for r in rows}
    assert [r['group'] for r in rows] == ['backbone', 'decode_head', 'loss', bm.OUTSIDE_GROUPS,
                                          bm.GRAD_ACCUMULATION, 'total']
    # the head's linear runs via head.loss -> self.forward: caught by the scope
    for group in ('backbone', 'decode_head', 'loss'):
        assert by[group]['forward_ms'] > 0 and by[group]['backward_ms'] > 0
    assert by['total']['total_ms'] == pytest.approx(sum(r['total_ms'] for r in rows[:-1]))
    assert sum(r['share'] for r in rows[:-1]) == pytest.approx(1.0)
    # the wrappers are gone afterwards
    assert 'forward' not in model.decode_head.__dict__
    assert 'loss' not in model.decode_head.__dict__


def test_tool_writes_json_and_table(tiny_config, tmp_path, capsys):
    tool = bm
    out = tmp_path / 'out' / 'bench.json'
    report = tool.main([tiny_config, tiny_config, '--names', 'a', 'b', '--batch-size', '2',
                        '--img-size', str(IMG), '--repeats', '2', '--warmup', '0',
                        '--no-memory', '--profile', 'forward', '--cfg-options',
                        'model.neck.fusion_cfg.router.top_k=1', '--json', str(out)])
    with open(out) as f:
        saved = json.load(f)
    assert saved['results'][1]['train']['times_ms'] == report['results'][1]['train']['times_ms']
    assert [r['name'] for r in saved['results']] == ['a', 'b']
    assert saved['settings']['memory_method'] is None
    assert saved['results'][0]['memory']['train_peak_bytes'] is None
    assert saved['results'][1]['flops']['train'] > 0
    assert sum(saved['results'][0]['routing']) == 2 * 1 * 2 * 2
    # a forward-only profile has no backward time, and the head is in it
    rows = {r['group']: r for r in saved['profile']['forward']['b']}
    assert all(r['backward_ms'] == 0 for r in rows.values())
    assert rows['decode_head']['forward_ms'] > 0 and rows['neck.fusion']['forward_ms'] > 0
    assert 'train' not in saved['profile']
    printed = capsys.readouterr().out
    assert 'fwd+bwd ms' in printed and 'Saved the report' in printed
    with pytest.raises(SystemExit):
        tool.parse_args([tiny_config, '--names', 'a', 'b'])
