"""The configs build the models they describe.

The full-size configs (ViT-B/14 and ViT-L/14 + CLIP ViT-B/16 text) are built
on the meta device: no memory, no weights, but every module, shape and
``requires_grad`` flag. The toy configs are built on the CPU and run.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from sera_mm.registry import MODELS
from sera_mm.utils import disable_pretrained
from helpers.config_expectations import MODEL_EXPECTATIONS, expected_configs
from helpers.configs import REPO, config_files, is_full_size, iter_typed_nodes
from helpers.tool_runner import load_tool

param_report = load_tool('analysis_tools/param_report.py').param_report

DETRIS_B = 'configs/detris/detris_dinov2-b_refcoco.py'
SERA_MAIN = 'configs/sera/sera_dinov2-b_refcoco.py'
#: From the table (tests/helpers/config_expectations.py), not from the names.
FULL_CONFIGS = expected_configs('full')
TINY_CONFIGS = expected_configs('tiny')
#: DETRIS-B's trainable parameters: text adapters, DenseAligners, neck,
#: decoder, head (DETRIS's gate; 22,891,569 with the folded gate).
DETRIS_B_TRAINABLE = 25_518_129


def load(path: str) -> Config:
    return Config.fromfile(osp.join(REPO, path))


def build_model(path: str, meta: bool = False, **overrides) -> nn.Module:
    """Builds ``cfg.model`` without its pretrained files, in training mode as
    the Runner puts it."""
    cfg = load(path)
    cfg.merge_from_dict(overrides)
    disable_pretrained(cfg.model)
    if meta:
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
    else:
        model = MODELS.build(cfg.model)
    return model.train()


def count(params, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)


def own_params(module: nn.Module):
    """A module's parameters without its adapters'."""
    return [p for n, p in module.named_parameters() if not n.startswith('adapters.')]


def check_variant(model: nn.Module, path: str) -> None:
    """Checks what the config's row of MODEL_EXPECTATIONS says: 'detris'
    (text adapters and DenseAligners, no fusion); 'adapter-only':
    SERA-Adapters, no fusion; 'sera': SERA-Adapters and one SERA-Fusion per
    level with the row's Top-k, experts at zero or not, on the backbone's or
    the neck's channels; the pad mask and the context length of the row."""
    expected = MODEL_EXPECTATIONS[path]
    cfg = load(path)
    blocks = [str(i) for i in cfg.model.backbone.adapter_indices]
    text_blocks = [str(i) for i in cfg.model.text_encoder.adapter_indices]
    levels = len(cfg.model.neck.in_channels)
    adapters = {k: type(m).__name__ for k, m in model.backbone.adapters.items()}
    text_adapters = {k: type(m).__name__ for k, m in model.text_encoder.adapters.items()}
    fusions = list(model.neck.fusions) if model.neck.fusions is not None else []
    assert text_adapters == dict.fromkeys(text_blocks, 'TextAdapter')
    assert model.neck.gate == 'detris' and model.backbone.pos_embed_mode == 'detris'
    if expected.variant == 'detris':
        assert adapters == dict.fromkeys(blocks, 'DenseAligner')
        assert not fusions and model.moe_loss is None
    elif expected.variant == 'adapter-only':
        assert adapters == dict.fromkeys(blocks, 'SERAAdapter')
        assert not fusions
    else:
        assert expected.variant == 'sera', expected
        assert adapters == dict.fromkeys(blocks, 'SERAAdapter')
        assert [type(f).__name__ for f in fusions] == ['SERAFusion'] * levels
        assert [f.router.top_k for f in fusions] == [expected.top_k] * levels
        assert [f.zero_init_experts for f in fusions] == [expected.zero_init] * levels
        assert model.moe_loss.load == expected.moe_load
        width = dict(neck=model.neck.channels,
                     backbone=model.backbone.embed_dims)[expected.fusion_width]
        assert [f.channels for f in fusions] == [width] * levels
    assert all(a.use_pad_mask == expected.pad_mask for a in model.backbone.adapters.values())
    assert model.text_encoder.context_length == expected.context_length


def check_context_length(model: nn.Module, path: str) -> None:
    """The sentence length has one setting, model.text_encoder.context_length:
    the encoder tokenises with it, and no other key of the config (a pipeline
    step, the tower's text_cfg) holds a context_length."""
    cfg = load(path).to_dict()
    others = [where for where, node in iter_typed_nodes(cfg)
              if 'context_length' in node and where != 'model.text_encoder']
    assert not others, f'{path}: context_length also set in {others}'
    assert 'context_length' not in (cfg['model']['text_encoder'].get('text_cfg') or {})
    assert model.text_encoder.tokenizer.context_length == model.text_encoder.context_length


def check_detris_protocol(path: str) -> None:
    """DETRIS's letterbox, soft training masks and post-processing."""
    cfg = load(path)
    letterboxes = {where: node for where, node in iter_typed_nodes(cfg.to_dict())
                   if node['type'] == 'Letterbox'}
    assert letterboxes and all(node['mode'] == 'affine' for node in letterboxes.values())
    for where, node in letterboxes.items():
        assert node.get('soft_masks', False) == where.startswith('train'), where
    expected = MODEL_EXPECTATIONS[path]
    no_target = dict(min_mask_pixels=expected.min_mask_pixels,
                     no_target_threshold=expected.no_target_threshold)
    assert cfg.model.test_cfg == dict(threshold=0.35,
                                      upsample=dict(mode='bicubic', align_corners=True),
                                      **{k: v for k, v in no_target.items() if v})


def test_configs_are_found():
    """The table names every config on disk (a renamed, added or removed one
    fails here), and its sizes are the configs' own."""
    on_disk = config_files(bases=False)
    assert sorted(MODEL_EXPECTATIONS) == on_disk, (
        f'not in the table: {sorted(set(on_disk) - set(MODEL_EXPECTATIONS))}; '
        f'not on disk: {sorted(set(MODEL_EXPECTATIONS) - set(on_disk))}')
    for path in on_disk:
        assert is_full_size(path) == (MODEL_EXPECTATIONS[path].size == 'full'), path
    assert DETRIS_B in FULL_CONFIGS and SERA_MAIN in FULL_CONFIGS
    names = {osp.basename(f) for f in FULL_CONFIGS}
    for model in ('b', 'l'):
        for data in ('refcoco', 'refcoco+', 'refcocog-umd', 'refcocog-google'):
            assert f'detris_dinov2-{model}_{data}.py' in names
    assert 'detris_dinov2-l_refcoco-mixed.py' in names
    assert {'detris-tiny_synthetic.py', 'sera-tiny_synthetic.py'} <= {
        osp.basename(f) for f in TINY_CONFIGS}


@pytest.mark.parametrize('path', FULL_CONFIGS)
def test_full_size_config_builds(path):
    model = build_model(path, meta=True)
    cfg = load(path)
    expected = MODEL_EXPECTATIONS[path]
    large = cfg.model.backbone.arch == 'large'
    assert type(model).__name__ == 'ReferringSegmentor'
    assert (model.backbone.embed_dims, model.backbone.num_layers) == \
        ((1024, 24) if large else (768, 12))
    assert model.backbone.out_indices == ([8, 16, 23] if large else [4, 8, 11])
    assert model.text_encoder.quick_gelu and model.text_encoder.pad_mask == 'zero_token'
    # the text tower's own weights are frozen; its adapters train
    assert count(own_params(model.text_encoder), trainable_only=True) == 0
    assert count(model.text_encoder.adapters.parameters(), trainable_only=True) > 0
    own = own_params(model.backbone)
    if expected.bitfit_ln:  # SERA: BitFit + LN, under 1% of DINOv2
        assert 0 < count(own, trainable_only=True) < 0.01 * count(own)
    else:
        assert count(own, trainable_only=True) == 0
    assert {layer.ffn[0].out_features for layer in model.decoder.layers} == {512}
    check_variant(model, path)
    check_context_length(model, path)
    check_detris_protocol(path)
    # (check_variant: G-Ref (umd) sentences take 22 tokens, as DETRIS)
    assert any('Dice' in type(m).__name__
               for m in model.decode_head.loss_decode) == expected.dice
    assert (model.presence_head is not None) == expected.presence


def test_detris_b_trains_detris_trainable_set():
    model = build_model(DETRIS_B, meta=True)
    rows = {r['name']: r for r in param_report(model)}
    assert rows['total']['trainable'] == DETRIS_B_TRAINABLE
    assert rows['text_encoder']['trainable'] == 418_320  # 6 text adapters
    assert rows['backbone']['trainable'] == rows['backbone.adapters']['total'] == 2_297_376
    for part, size in (('neck', 10_114_560), ('decoder', 7_899_136),
                       ('decode_head', 4_788_737)):
        assert rows[part]['trainable'] == rows[part]['total'] == size, part
    folded = build_model(DETRIS_B, meta=True, model=dict(neck=dict(gate='folded')))
    assert count(folded.parameters(), trainable_only=True) == 22_891_569


def test_sera_image_encoder_trains_only_bias_and_layernorm():
    model = build_model(SERA_MAIN, meta=True)
    backbone = model.backbone
    norms = {n for n, m in backbone.named_modules() if isinstance(m, nn.LayerNorm)}
    for n, p in backbone.named_parameters():
        if n.startswith('adapters.') or not p.requires_grad:
            continue
        assert n.endswith('.bias') or n.rsplit('.', 1)[0] in norms, \
            f'backbone.{n} is trainable but neither a bias nor a LayerNorm weight'


def test_sera_optimizer_holds_exactly_the_trainable_parameters():
    model = build_model(SERA_MAIN)
    optim_wrapper = build_optim_wrapper(model, load(SERA_MAIN).optim_wrapper)
    held = [p for g in optim_wrapper.optimizer.param_groups for p in g['params']]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len({id(p) for p in held}) == len(held)
    assert {id(p) for p in held} == {id(p) for p in trainable}


def test_recipes():
    """DETRIS: 2 x 16 with SyncBN and fp16; SERA: one GPU, no SyncBN."""
    detris, sera = load(DETRIS_B), load(SERA_MAIN)
    assert detris.train_dataloader.batch_size == 16 and detris.train_dataloader.drop_last
    assert detris.sync_bn == 'torch' and detris.amp_dtype == 'float16'
    assert sera.sync_bn is None
    assert detris.param_scheduler[0].milestones == [35, 55]
    google = load('configs/detris/detris_dinov2-b_refcocog-google.py')
    assert google.train_cfg.max_epochs == 50 and google.param_scheduler[0].milestones == [35]
    large = load('configs/detris/detris_dinov2-l_refcoco.py')
    assert large.train_cfg.max_epochs == 50


@pytest.mark.parametrize('path', TINY_CONFIGS)
def test_tiny_config_builds_and_runs(path):
    torch.manual_seed(0)
    model = build_model(path)
    # trained from scratch: nothing is frozen
    assert count(model.parameters(), trainable_only=True) == count(model.parameters())
    cfg = load(path)
    # the model's input size: its data set's Letterbox's
    scale = {node['scale'] for _, node in iter_typed_nodes(cfg.to_dict())
             if node['type'] == 'Letterbox'}
    assert len(scale) == 1, scale
    size = (scale.pop(), ) * 2
    samples = []
    for text in ('the red circle', 'the leftmost square'):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, text=text))
        # a soft training mask, as the affine letterbox makes them
        sample.gt_sem_seg = PixelData(data=torch.rand(1, *size))
        samples.append(sample)
    inputs = torch.randn(2, 3, *size)
    losses = model(inputs, samples, mode='loss')
    check_variant(model, path)
    check_context_length(model, path)
    check_detris_protocol(path)
    num_fusions = len(model.neck.fusions) if model.neck.fusions is not None else 0
    routed = {k[len('routing/'):].rsplit('.', 2)[0] for k in losses if k.startswith('routing/')}
    assert routed == set(model.router_experts())
    assert len([r for r in routed if r.startswith('fusion.')]) == num_fusions
    assert ('loss_moe' in losses) == (num_fusions > 0)
    assert ('loss_presence' in losses) == MODEL_EXPECTATIONS[path].presence
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        logits = model(inputs, samples, mode='tensor')
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] == logits.shape[-2]


@pytest.mark.parametrize('path', expected_configs('tiny', ('sera', )))
def test_tiny_sera_fusion_starts_as_identity_after_init_weights(path):
    """What the Runner builds: after ``init_weights()`` every SERA-Fusion
    level returns its input, unless the config asks for the random init."""
    torch.manual_seed(0)
    model = build_model(path)
    model.init_weights()
    model.eval()
    zero_init = MODEL_EXPECTATIONS[path].zero_init
    with torch.no_grad():
        for level, fusion in enumerate(model.neck.fusions):
            x = torch.randn(2, fusion.channels, 6, 6)
            out, _ = fusion(x)
            # the weights sum to 1 up to rounding
            assert torch.allclose(out, x, atol=1e-5) == zero_init, \
                f'{path}: level {level} is {"not " if zero_init else ""}the identity at start'
