"""tools/analysis_tools/benchmark.py on a tiny SERA.

No timing assertions: the tests check the fields, that ratios come from the
same run's times, that pretrained references are switched off, that the
synthetic batch goes through the real loss path, and the memory and
profile bookkeeping on hand-checkable cases.
"""
import json
import os

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
        # a sentence of 1 to 5 words: with start and end, at most the 7 tokens
        tokens = case.model.text_encoder.tokenize([ds.text])[0]
        assert tokens.shape == (7, ) and tokens[0] == 49406
        assert 1 <= len(ds.text.split()) <= 5 and 49407 in tokens[2:].tolist()
        assert ds.metainfo['letterbox']['ori_shape'] != (IMG, IMG)
    # The letterbox pads: the two aspect ratios give different padding.
    pads = [ds.metainfo['letterbox']['pad'] for ds in batch['data_samples']]
    assert pads[0] != pads[1] and all(sum(p) > 0 for p in pads)

    model = case.model
    with bm.recorded_routing(model) as seen:
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
    assert sum(bm.routing_counts(seen)) == 2 * 2 * 2  # B x k x levels
    assert bm.routing_counts([]) is None
    bm.forward_step(model, batch, mode='predict')
    assert model.training  # put back in train mode


def test_run_benchmark_fields_and_ratios_come_from_the_same_run(tiny_config):
    cases = [build_case(tiny_config, 'top2'),
             build_case(tiny_config, 'top1', **{'model.neck.fusion_cfg.router.top_k': 1})]
    lines = []
    report = bm.run_benchmark(cases, repeats=3, warmup=1, memory=True, log=lines.append)
    assert len(lines) == 6 and lines[0].startswith('warm-up 1/1')
    assert [line.split(':')[0] for line in lines[4:]] == ['counted top2', 'counted top1']
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


# -- reference mode against DETRIS's own code (--detris-root) -------------------
# The tests cannot fetch DETRIS's code, so the end-to-end test runs against a
# stand-in checkout: DETRIS's layout and interfaces only (a `model` package
# imported top-level, model/segmenter.py's DETRIS(cfg) loading
# cfg.clip_pretrain with torch.jit.load and cfg.dino_pretrain with torch.load,
# forward(img, word, mask) -> (pred, mask, loss) in training and pred in eval,
# module-level imports of loguru and fvcore, model/dinov2/layers/attention.py's
# XFORMERS_AVAILABLE, config/refcoco/DETRIS_base.yaml) around a toy network.
# It covers the tool's side (import, yaml, the weight stand-ins and the keys
# DETRIS's build_model reads from them, the steps, ratios, profile groups,
# report), not DETRIS's architecture: that is checked against the real code
# with SERA_DETRIS_ROOT set (test_reference_mode_on_detris_own_code).
_STANDIN_SEGMENTER = '''
import fvcore.nn.weight_init as weight_init  # DETRIS's layers.py imports it
import torch
import torch.nn as nn
import torch.nn.functional as F


def _clip_sizes(sd):
    """What DETRIS's model/clip.py build_model reads from the archive."""
    assert 'visual.proj' in sd
    layers = len([k for k in sd if k.startswith('visual.') and k.endswith('.attn.in_proj_weight')])
    return dict(
        vision_width=sd['visual.conv1.weight'].shape[0], vision_layers=layers,
        patch=sd['visual.conv1.weight'].shape[-1],
        grid=round((sd['visual.positional_embedding'].shape[0] - 1) ** 0.5),
        embed_dim=sd['text_projection'].shape[1],
        context_length=sd['positional_embedding'].shape[0],
        vocab_size=sd['token_embedding.weight'].shape[0],
        width=sd['ln_final.weight'].shape[0],
        text_layers=len(set(k.split('.')[2] for k in sd if k.startswith('transformer.resblocks'))))


class Adapter(nn.Linear):
    pass


class DenseAligner(nn.Linear):
    pass


class Block(nn.Module):
    def __init__(self, d, adapter_cls):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2)  # sequence first, as CLIP's
        self.adapter = adapter_cls(d, d)

    def forward(self, x):
        return x + self.attn(x, x, x, need_weights=False)[0] + self.adapter(x)


class DETRIS(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        clip = torch.jit.load(cfg.clip_pretrain, map_location='cpu').eval()
        self.clip_sizes = _clip_sizes(clip.state_dict())
        assert torch.load(cfg.dino_pretrain) == {}
        d, self.word_len = 16, cfg.word_len
        self.txt_backbone = nn.Module()
        self.txt_backbone.token_embedding = nn.Embedding(self.clip_sizes['vocab_size'], d)
        self.txt_backbone.transformer = nn.Module()
        self.txt_backbone.transformer.resblocks = nn.ModuleList(
            [Block(d, Adapter) for _ in range(2)])
        self.txt_backbone.ln_final = nn.LayerNorm(d)
        self.dinov2 = nn.Module()
        self.dinov2.patch_embed = nn.Conv2d(3, d, 14, 14)
        self.dinov2.blocks = nn.ModuleList([Block(d, DenseAligner) for _ in range(2)])
        self.dinov2.norm = nn.LayerNorm(d)
        for p in self.txt_backbone.parameters():
            p.requires_grad = False
        self.neck = nn.Conv2d(d, d, 1)
        self.decoder = nn.Conv2d(d, d, 3, padding=1)
        self.proj = nn.Conv2d(d, 1, 1)

    def forward(self, img, word, mask=None):
        assert word.shape[1] == self.word_len and img.shape[-1] % 14 == 0
        txt = self.txt_backbone.token_embedding(word).transpose(0, 1)
        for block in self.txt_backbone.transformer.resblocks:
            txt = block(txt)
        state = self.txt_backbone.ln_final(txt).mean(0)
        x = self.dinov2.patch_embed(img)
        b, c, h, w = x.shape
        x = x.flatten(2).permute(2, 0, 1)
        for block in self.dinov2.blocks:
            x = block(x)
        x = self.dinov2.norm(x).permute(1, 2, 0).reshape(b, c, h, w)
        x = self.decoder(self.neck(x) * state[:, :, None, None])
        pred = F.interpolate(self.proj(x), scale_factor=4.0)
        if self.training:
            mask = F.interpolate(mask, pred.shape[-2:], mode='nearest')
            return pred.detach(), mask, F.binary_cross_entropy_with_logits(pred, mask)
        return pred.detach()
'''
_STANDIN_FILES = {
    'model/__init__.py': 'from .segmenter import DETRIS\nfrom loguru import logger\n',
    'model/segmenter.py': _STANDIN_SEGMENTER,
    'model/dinov2/__init__.py': '',
    'model/dinov2/layers/__init__.py': '',
    'model/dinov2/layers/attention.py':
        'import os\nXFORMERS_AVAILABLE = os.environ.get("XFORMERS_DISABLED") is None\n',
    'config/refcoco/DETRIS_base.yaml':
        'DATA:\n  dataset: refcoco\nTRAIN:\n  model_name: CLIP-b-16\n  input_size: 448\n'
        '  word_len: 7\n  clip_pretrain: pretrain/ViT-B-16.pt\n'
        '  dino_pretrain: pretrain/dinov2_vitb14_reg4_pretrain.pth\n',
}


def _write_standin(root):
    for rel, text in _STANDIN_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def test_detris_weight_standins_have_what_detris_build_model_reads(tmp_path):
    clip, dino = bm.write_detris_weight_standins(str(tmp_path), seed=0)
    state = torch.jit.load(clip, map_location='cpu').state_dict()
    # the reads of DETRIS's model/clip.py build_model
    assert 'visual.proj' in state
    assert state['visual.conv1.weight'].shape == (768, 3, 16, 16)
    assert len([k for k in state if k.startswith('visual.')
                and k.endswith('.attn.in_proj_weight')]) == 12
    assert state['visual.positional_embedding'].shape == (197, 768)
    assert state['text_projection'].shape == (512, 512)
    assert state['positional_embedding'].shape == (77, 512)
    assert state['token_embedding.weight'].shape == (49408, 512)
    assert state['ln_final.weight'].shape == (512, )
    assert len({k.split('.')[2] for k in state if k.startswith('transformer.resblocks')}) == 12
    # what the text tower loads is random and CLIP-scaled; the visual
    # tower's (deleted by build_model) costs no memory
    assert 0.015 < state['token_embedding.weight'].std() < 0.025
    assert state['visual.conv1.weight'].stride() == (0, 0, 0, 0)
    assert torch.load(dino, weights_only=True) == {}


def test_detris_yaml_is_read_flat(tmp_path):
    root = _write_standin(tmp_path)
    settings = bm.read_detris_yaml(f'{root}/config/refcoco/DETRIS_base.yaml')
    assert settings['word_len'] == 7 and settings['dataset'] == 'refcoco'


def test_gpu_peak_table():
    assert bm.gpu_bf16_peak_tflops('NVIDIA H100 80GB HBM3') == pytest.approx(989.4)
    assert bm.gpu_bf16_peak_tflops('NVIDIA H100 PCIe') == 756.0
    assert bm.gpu_bf16_peak_tflops('NVIDIA H200') == pytest.approx(989.4)
    assert bm.gpu_bf16_peak_tflops('NVIDIA A100-SXM4-80GB') == 312.0
    assert bm.gpu_bf16_peak_tflops('NVIDIA A10') == 125.0
    assert bm.gpu_bf16_peak_tflops('NVIDIA RTX A6000') == pytest.approx(154.8)
    assert bm.gpu_bf16_peak_tflops('Some GPU') is None


def _run_reference_mode(detris_root, tiny_config, out, img, extra=()):
    from helpers.tool_runner import run_tool
    return run_tool('analysis_tools/benchmark.py', [
        tiny_config, '--names', 'mine', '--detris-root', detris_root, '--batch-size', '2',
        '--img-size', str(img), '--repeats', '2', '--warmup', '1', '--threads', '1',
        '--profile', 'train', '--peak-tflops', '0.1', '--json', str(out), *extra])


@pytest.mark.integration
def test_reference_mode_end_to_end_on_a_standin_checkout(tiny_config, tmp_path):
    """--detris-root: DETRIS's model built by the checkout's code, first in
    the table (the reference of the ratios), timed in the same rounds."""
    from helpers.tool_runner import explain
    root = _write_standin(tmp_path / 'detris')
    out = tmp_path / 'report.json'
    proc = _run_reference_mode(root, tiny_config, out, img=56,
                               extra=['--cfg-options', 'model.text_encoder.context_length=7'])
    assert proc.returncode == 0, explain(proc)
    report = json.loads(out.read_text())
    ref, mine = report['results']
    assert ref['name'] == 'detris-official' and report['settings']['reference'] == ref['name']
    assert ref['info']['stubbed_imports'] == ['loguru', 'fvcore.nn.weight_init']
    assert ref['info']['xformers'] is False  # XFORMERS_DISABLED=1 on the CPU
    assert ref['info']['yaml'] == 'config/refcoco/DETRIS_base.yaml'
    assert ref['info']['word_len'] == 7
    assert report['settings']['batch_size'] == 2
    assert report['settings']['input_shape'] == [3, 56, 56]
    for r in (ref, mine):
        assert len(r['train']['times_ms']) == 2 and r['flops']['train'] > r['flops']['forward'] > 0
        assert r['memory']['train_peak_bytes'] > 0
        thr = r['throughput']
        assert thr['train_samples_per_s'] == pytest.approx(2e3 / r['train']['median_ms'])
        assert thr['train_mfu'] == pytest.approx(thr['train_flops_per_s'] / 1e11)
    assert ref['train']['ratio'] == 1.0
    assert mine['train']['ratio'] == pytest.approx(
        mine['train']['median_ms'] / ref['train']['median_ms'])
    # the text tower is frozen, the rest trains
    assert 0 < ref['params']['trainable'] < ref['params']['total']
    rows = {r['group']: r for r in report['profile']['train']['detris-official']}
    for group in ('text_encoder', 'text_encoder.adapters', 'backbone', 'backbone.adapters',
                  'neck', 'decoder', 'decode_head'):
        assert rows[group]['forward_ms'] > 0, group
    assert rows['backbone.adapters']['backward_ms'] > 0
    assert 'detris-official' in proc.output and 'MFU' in proc.output


@pytest.mark.integration
@pytest.mark.skipif(not os.environ.get('SERA_DETRIS_ROOT'),
                    reason="SERA_DETRIS_ROOT (a checkout of DETRIS's code) not set")
def test_reference_mode_on_detris_own_code(tmp_path):
    """DETRIS's real code (ViT-B, random weights) against this project's
    DETRIS config at 112 px, one round: both count the same FLOPs (the same
    function; DETRIS computes DINOv2's attention explicitly, this project
    with SDPA)."""
    from helpers.tool_runner import explain, run_tool
    out = tmp_path / 'report.json'
    proc = run_tool('analysis_tools/benchmark.py', [
        'configs/detris/detris_dinov2-b_refcoco.py', '--names', 'detris-mm',
        '--detris-root', os.environ['SERA_DETRIS_ROOT'], '--batch-size', '1',
        '--img-size', '112', '--repeats', '1', '--warmup', '0', '--threads', '1',
        '--no-memory', '--json', str(out)])
    assert proc.returncode == 0, explain(proc)
    ref, mine = json.loads(out.read_text())['results']
    assert ref['params']['trainable'] == mine['params']['trainable']
    for mode in ('train', 'forward'):
        assert mine['flops'][mode] == pytest.approx(ref['flops'][mode], rel=1e-3), mode
