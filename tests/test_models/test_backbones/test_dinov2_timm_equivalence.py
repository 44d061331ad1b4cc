"""DINOv2 equals timm's DINOv2-reg ViT on the same official-layout weights.

timm loads the file through its own converter (``checkpoint_filter_fn``,
which folds the cls position embedding into the cls token) and resizes
position embeddings on the fly (``dynamic_img_size``, bicubic + antialias),
as the official reg models do. Each model runs once per input size, batch 1;
the final patch tokens (after the last norm) and the raw intermediate block
outputs are compared.
"""
import pytest
import timm
import torch
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer as TimmViT
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from sera_mm.models.backbones import DINOv2
from helpers.dinov2_official_layout import (ARCHS, official_dinov2_state_dict,
                                            save_official_dinov2, swiglu_hidden)

TOL = 1e-4


def _build_pair(tmp_path, arch: str, num_register_tokens: int, out_indices):
    """(ours, timm) on the same random official-layout file, in eval mode."""
    state_dict = official_dinov2_state_dict(arch, num_register_tokens)
    path = save_official_dinov2(tmp_path / f'dinov2_{arch}.pth', arch,
                                state_dict=state_dict)
    ours = DINOv2(arch=arch if arch in ('small', 'base') else ARCHS[arch],
                  num_register_tokens=num_register_tokens, out_indices=out_indices,
                  init_cfg=dict(type='Pretrained', checkpoint=path))
    ours.init_weights()
    ours.eval()
    if arch in ('small', 'base') and num_register_tokens == 4:
        ref = timm.create_model(f'vit_{arch}_patch14_reg4_dinov2', pretrained=False,
                                img_size=518, dynamic_img_size=True, num_classes=0)
    else:
        cfg = ARCHS[arch]
        mlp = dict(mlp_ratio=cfg['feedforward_channels'] / cfg['embed_dims'])
        if cfg.get('ffn_type') == 'swiglu_fused':  # as timm's vit_giant_*_dinov2
            mlp = dict(mlp_ratio=2 * swiglu_hidden(cfg['feedforward_channels']) / cfg['embed_dims'],
                       mlp_layer=SwiGLUPacked, act_layer=nn.SiLU)
        ref = TimmViT(img_size=518, patch_size=14, embed_dim=cfg['embed_dims'],
                      depth=cfg['num_layers'], num_heads=cfg['num_heads'],
                      init_values=1e-5, reg_tokens=num_register_tokens,
                      no_embed_class=num_register_tokens > 0,
                      dynamic_img_size=True, num_classes=0, **mlp)
    ref.load_state_dict(checkpoint_filter_fn(dict(state_dict), ref), strict=True)
    ref.eval()
    return ours, ref


def _compare(ours, ref, height: int, width: int, out_indices) -> None:
    """Runs both once on a random image; asserts every map within TOL."""
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(height + width))
    with torch.no_grad():
        outs, _ = ours(x)
        final, inters = ref.forward_intermediates(x, indices=list(out_indices), norm=False)
    grid = (height // 14, width // 14)
    assert len(outs) == len(out_indices)
    final_map = final[:, ref.num_prefix_tokens:].reshape(1, *grid, -1).permute(0, 3, 1, 2)
    expected = list(inters[:-1]) + [final_map]  # the last block after the final norm
    for index, got, want in zip(out_indices, outs, expected):
        assert got.shape == (1, ours.embed_dims, *grid), index
        diff = (got - want).abs().max().item()
        print(f'{height}x{width} block {index}: max |ours - timm| = {diff:.2e}')
        assert diff <= TOL, f'block {index} at {height}x{width}: {diff}'


@pytest.fixture(scope='module')
def base_pair(tmp_path_factory):
    return _build_pair(tmp_path_factory.mktemp('base'), 'base', 4, (3, 7, 11))


@pytest.mark.parametrize('size', [518, 448])
def test_base_reg4_matches_timm(base_pair, size):
    _compare(*base_pair, size, size, (3, 7, 11))


def test_small_reg4_non_square_matches_timm(tmp_path):
    ours, ref = _build_pair(tmp_path, 'small', 4, (3, 7, 11))
    _compare(ours, ref, 252, 364, (3, 7, 11))  # 18 x 26 grid: downsampled pos


@pytest.mark.parametrize('arch, num_register_tokens', [
    ('tiny', 4), ('tiny', 0), ('tiny_swiglu', 4)])
def test_tiny_matches_timm_over_sizes(tmp_path, arch, num_register_tokens):
    ours, ref = _build_pair(tmp_path, arch, num_register_tokens, (0, 2))
    # stored grid, smaller and larger (upsampled, antialias kernel), non-square
    for height, width in [(518, 518), (224, 224), (602, 546), (126, 280)]:
        _compare(ours, ref, height, width, (0, 2))
