"""The configs build the models they describe.

The ViT-B configs are built with random weights (their pretrained paths set
to None): ViT-B/14 + CLIP ViT-B/16 text, about 2 s each on CPU.
"""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from sera_mm.datasets.transforms import TokenizeText
from sera_mm.registry import MODELS
from sera_mm.utils import param_report
from .config_utils import REPO, config_files, is_vitb, iter_typed_nodes, strip_pretrained

SERA_MAIN = 'configs/sera/sera_dinov2-b_refcoco.py'
VITB_CONFIGS = [f for f in config_files(bases=False) if is_vitb(f)]
TINY_CONFIGS = [f for f in config_files(bases=False) if not is_vitb(f)]


def build_model(path: str, without_pretrained: bool = False) -> nn.Module:
    """Builds ``cfg.model`` and puts it in training mode, as the Runner does."""
    cfg = Config.fromfile(osp.join(REPO, path))
    if without_pretrained:
        changed = strip_pretrained(cfg.model)
        assert changed, f'{path} names no pretrained weights'
    model = MODELS.build(cfg.model)
    model.train()
    return model


def count(params, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)


def image_encoder_params(model: nn.Module):
    """The backbone's own parameters: everything but its adapters."""
    return [p for n, p in model.backbone.named_parameters() if not n.startswith('adapters.')]


def expects_zero_init(path: str) -> bool:
    """SERA configs start the SERA-Fusion experts at zero unless named 'random-init'."""
    return 'random-init' not in osp.basename(path)


def check_variant(model: nn.Module, path: str) -> None:
    """Checks the adapters and SERA-Fusion levels the config's name promises:
    'detris'/'baseline': plain adapters, no fusion; 'adapter-only':
    SERA-Adapters, no fusion; otherwise SERA-Adapters and one SERA-Fusion
    per level with Top-k, k from '_top<k>_' in the name (default 2), whose
    experts start at zero unless the name says 'random-init'."""
    cfg = Config.fromfile(osp.join(REPO, path))
    name = osp.basename(path)
    blocks = [str(i) for i in cfg.model.backbone.adapter_indices]
    levels = len(cfg.model.neck.in_channels)
    adapters = {k: type(m).__name__ for k, m in model.backbone.adapters.items()}
    fusions = list(model.neck.fusions) if model.neck.fusions is not None else []
    if name.startswith(('detris', 'baseline')):
        assert adapters == dict.fromkeys(blocks, 'PlainAdapter')
        assert not fusions
    elif 'adapter-only' in name:
        assert adapters == dict.fromkeys(blocks, 'SERAAdapter')
        assert not fusions
    else:
        top_k = re.search(r'_top(\d)_', name)
        assert adapters == dict.fromkeys(blocks, 'SERAAdapter')
        assert [type(f).__name__ for f in fusions] == ['SERAFusion'] * levels
        expected_k = int(top_k.group(1)) if top_k else 2
        assert [f.router.top_k for f in fusions] == [expected_k] * levels
        assert [f.zero_init_experts for f in fusions] == [expects_zero_init(path)] * levels


def check_context_length(model: nn.Module, path: str) -> None:
    """Every TokenizeText of the config pads to the text encoder's length."""
    cfg = Config.fromfile(osp.join(REPO, path)).to_dict()
    tokenizers = [(where, node) for where, node in iter_typed_nodes(cfg)
                  if node['type'] == 'TokenizeText']
    assert tokenizers, f'{path} tokenises nothing'
    for where, node in tokenizers:
        assert node['context_length'] == model.text_encoder.context_length, \
            f'{path}: {where} pads to {node["context_length"]} tokens, the text ' \
            f'encoder takes {model.text_encoder.context_length}'


@pytest.fixture(scope='module')
def sera_vitb() -> nn.Module:
    """The main SERA config's model, built once for this module."""
    return build_model(SERA_MAIN, without_pretrained=True)


def test_vitb_configs_are_found():
    assert SERA_MAIN in VITB_CONFIGS and len(VITB_CONFIGS) >= 10, VITB_CONFIGS


@pytest.mark.parametrize('path', VITB_CONFIGS)
def test_vitb_config_builds(path, request):
    model = request.getfixturevalue('sera_vitb') if path == SERA_MAIN \
        else build_model(path, without_pretrained=True)
    name = osp.basename(path)
    assert type(model).__name__ == 'ReferringSegmentor'
    assert model.backbone.embed_dims == 768 and model.backbone.num_layers == 12
    assert count(model.text_encoder.parameters(), trainable_only=True) == 0
    own = image_encoder_params(model)
    assert count(own, trainable_only=True) < 0.01 * count(own)

    check_variant(model, path)
    check_context_length(model, path)
    if 'refcocog-umd' in name:  # G-Ref (umd) sentences: 22 tokens (docs/en/method.md, s. 1)
        assert model.text_encoder.context_length == 22
    if 'dice' in name:
        assert any('Dice' in type(m).__name__ for m in model.decode_head.loss_decode)


def test_sera_image_encoder_trains_only_bias_and_layernorm(sera_vitb):
    rows = {r['name']: r for r in param_report(sera_vitb)}
    assert rows['text_encoder']['trainable'] == 0 and rows['text_encoder']['total'] > 0
    own_trainable = rows['backbone']['trainable'] - rows['backbone.adapters']['trainable']
    own_total = rows['backbone']['total'] - rows['backbone.adapters']['total']
    share = own_trainable / own_total
    assert 0 < share < 0.01, f'image encoder trainable share {share:.4%}'
    assert rows['backbone.adapters']['trainable'] == rows['backbone.adapters']['total'] > 0

    backbone = sera_vitb.backbone
    norms = {n for n, m in backbone.named_modules() if isinstance(m, nn.LayerNorm)}
    for n, p in backbone.named_parameters():
        if n.startswith('adapters.') or not p.requires_grad:
            continue
        assert n.endswith('.bias') or n.rsplit('.', 1)[0] in norms, \
            f'backbone.{n} is trainable but neither a bias nor a LayerNorm weight'


def test_sera_optimizer_holds_exactly_the_trainable_parameters(sera_vitb):
    cfg = Config.fromfile(osp.join(REPO, SERA_MAIN))
    optim_wrapper = build_optim_wrapper(sera_vitb, cfg.optim_wrapper)
    held = [p for g in optim_wrapper.optimizer.param_groups for p in g['params']]
    trainable = [p for p in sera_vitb.parameters() if p.requires_grad]
    assert len({id(p) for p in held}) == len(held)
    assert {id(p) for p in held} == {id(p) for p in trainable}


@pytest.mark.parametrize('path', TINY_CONFIGS)
def test_tiny_config_builds_and_runs(path):
    torch.manual_seed(0)
    model = build_model(path)
    # trained from scratch: nothing is frozen
    assert count(model.parameters(), trainable_only=True) == count(model.parameters())
    cfg = Config.fromfile(osp.join(REPO, path))
    size = tuple(cfg.model.data_preprocessor['size'])
    tokenize = TokenizeText(context_length=cfg.model.text_encoder['context_length'])
    samples = []
    for text in ('the red circle', 'the leftmost square'):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size))
        sample.text_tokens = tokenize.transform(dict(text=text))['text_tokens']
        sample.gt_sem_seg = PixelData(data=torch.zeros(1, *size, dtype=torch.long))
        samples.append(sample)
    inputs = torch.randn(2, 3, *size)
    losses = model(inputs, samples, mode='loss')
    check_variant(model, path)
    check_context_length(model, path)
    num_fusions = len(model.neck.fusions) if model.neck.fusions is not None else 0
    assert len(model.last_routings) == num_fusions
    assert ('loss_moe' in losses) == (num_fusions > 0)
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        logits = model(inputs, samples, mode='tensor')
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] == logits.shape[-2]


@pytest.mark.parametrize('path', [p for p in TINY_CONFIGS
                                  if not osp.basename(p).startswith(('baseline', 'adapter-only'))])
def test_tiny_sera_fusion_starts_as_identity_after_init_weights(path):
    """What the Runner builds: after ``init_weights()`` every SERA-Fusion
    level returns its input, unless the config asks for the random init."""
    torch.manual_seed(0)
    model = build_model(path)
    model.init_weights()
    model.eval()
    zero_init = expects_zero_init(path)
    with torch.no_grad():
        for level, fusion in enumerate(model.neck.fusions):
            x = torch.randn(2, fusion.channels, 6, 6)
            out, _ = fusion(x)
            # the weights sum to 1 up to rounding
            assert torch.allclose(out, x, atol=1e-5) == zero_init, \
                f'{path}: level {level} is {"not " if zero_init else ""}the identity at start'
