"""Random DINOv2 weights in the official key layout, for equivalence tests.

The official files cannot be downloaded here; these state dicts have the
same keys and shapes (``cls_token``, ``pos_embed`` for cls + a square grid,
``register_tokens``, ``mask_token``, ``patch_embed.proj.*``,
``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,
ls2.gamma}.*`` (``mlp.w12``/``mlp.w3`` for a SwiGLU arch), ``norm.*``) and
values far enough from an identity network
(LayerScale ~ 0.1..0.6, position embeddings of unit scale) that every part
matters in the comparison.
"""
from typing import Dict, Optional

import torch
from torch import Tensor

#: embed_dims, num_layers, num_heads, feedforward_channels; the keys are
#: also valid ``DINOv2(arch=...)`` values (the tiny one as a dict).
ARCHS = {
    'small': dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
    'tiny': dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64),
    # SwiGLU like ViT-g: 96 -> a hidden width of 64 (w12: 32 -> 128, w3: 64 -> 32)
    'tiny_swiglu': dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=96,
                        ffn_type='swiglu_fused'),
}


def swiglu_hidden(feedforward_channels: int) -> int:
    """The hidden width the official SwiGLUFFNFused derives."""
    return (int(feedforward_channels * 2 / 3) + 7) // 8 * 8


def official_dinov2_state_dict(arch: str,
                               num_register_tokens: int = 4,
                               grid: int = 37,
                               patch_size: int = 14,
                               seed: int = 0) -> Dict[str, Tensor]:
    """Builds a random state dict in the official DINOv2 layout.

    Args:
        arch (str): A key of :data:`ARCHS`.
        num_register_tokens (int): 0 leaves ``register_tokens`` out.
        grid (int): Side of the stored position grid (37 for 518 / 14).
        patch_size (int): Patch side.
        seed (int): Seed of the generator.
    """
    cfg = ARCHS[arch]
    dims, ffn = cfg['embed_dims'], cfg['feedforward_channels']
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 1.0, mean: float = 0.0) -> Tensor:
        return torch.randn(*shape, generator=gen) * std + mean

    def linear(out_dims: int, in_dims: int, prefix: str) -> Dict[str, Tensor]:
        return {f'{prefix}.weight': randn(out_dims, in_dims, std=in_dims**-0.5),
                f'{prefix}.bias': randn(out_dims, std=0.1)}

    def norm(prefix: str) -> Dict[str, Tensor]:
        return {f'{prefix}.weight': randn(dims, std=0.1, mean=1.0),
                f'{prefix}.bias': randn(dims, std=0.1)}

    state = {
        'cls_token': randn(1, 1, dims),
        'pos_embed': randn(1, 1 + grid * grid, dims),
        'mask_token': randn(1, dims),
        'patch_embed.proj.weight': randn(dims, 3, patch_size, patch_size,
                                         std=(3 * patch_size**2)**-0.5),
        'patch_embed.proj.bias': randn(dims, std=0.1),
    }
    if num_register_tokens:
        state['register_tokens'] = randn(1, num_register_tokens, dims)
    for i in range(cfg['num_layers']):
        p = f'blocks.{i}'
        state.update(norm(f'{p}.norm1'))
        state.update(linear(3 * dims, dims, f'{p}.attn.qkv'))
        state.update(linear(dims, dims, f'{p}.attn.proj'))
        state[f'{p}.ls1.gamma'] = 0.1 + 0.5 * torch.rand(dims, generator=gen)
        state.update(norm(f'{p}.norm2'))
        if cfg.get('ffn_type') == 'swiglu_fused':
            hidden = swiglu_hidden(ffn)
            state.update(linear(2 * hidden, dims, f'{p}.mlp.w12'))
            state.update(linear(dims, hidden, f'{p}.mlp.w3'))
        else:
            state.update(linear(ffn, dims, f'{p}.mlp.fc1'))
            state.update(linear(dims, ffn, f'{p}.mlp.fc2'))
        state[f'{p}.ls2.gamma'] = 0.1 + 0.5 * torch.rand(dims, generator=gen)
    state.update(norm('norm'))
    return state


def save_official_dinov2(path: str, arch: str, num_register_tokens: int = 4,
                         seed: int = 0,
                         state_dict: Optional[Dict[str, Tensor]] = None) -> str:
    """Saves :func:`official_dinov2_state_dict` (or ``state_dict``) to
    ``path`` with ``torch.save``, as the official files are; returns path."""
    if state_dict is None:
        state_dict = official_dinov2_state_dict(arch, num_register_tokens, seed=seed)
    torch.save(state_dict, path)
    return str(path)
