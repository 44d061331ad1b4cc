"""DINOv2 checkpoints: the official key layout and this package's.

The official files (``dinov2_vit{s,b,l}14_reg4_pretrain.pth``) name keys
after the DINOv2 repository's ``DinoVisionTransformer``; :class:`DINOv2` is
built on mmpretrain's ``VisionTransformer``, whose keys differ. The mapping
is ``_TOP_LEVEL_KEYS`` and, for ``blocks.N.<key>`` -> ``layers.N.<value>``,
``_BLOCK_KEYS``; ``mask_token`` (used only by DINOv2's iBOT loss) is dropped.
Used by ``DINOv2.init_weights`` and
``tools/model_converters/dinov2_to_mmpretrain.py``.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from sera_mm.utils.checkpoint import load_weights_only

StateDict = Dict[str, Tensor]

OFFICIAL_LAYOUT = 'official DINOv2'
CONVERTED_LAYOUT = 'mmpretrain'

_DROPPED_KEYS = ('mask_token', )
_TOP_LEVEL_KEYS = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'register_tokens': 'register_tokens',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'patch_embed.proj.bias': 'patch_embed.projection.bias',
    'norm.weight': 'ln1.weight',
    'norm.bias': 'ln1.bias',
}
_BLOCK_KEYS = {
    'norm1.weight': 'ln1.weight',
    'norm1.bias': 'ln1.bias',
    'attn.qkv.weight': 'attn.qkv.weight',
    'attn.qkv.bias': 'attn.qkv.bias',
    'attn.proj.weight': 'attn.proj.weight',
    'attn.proj.bias': 'attn.proj.bias',
    'ls1.gamma': 'attn.gamma1.weight',
    'norm2.weight': 'ln2.weight',
    'norm2.bias': 'ln2.bias',
    'mlp.fc1.weight': 'ffn.layers.0.0.weight',
    'mlp.fc1.bias': 'ffn.layers.0.0.bias',
    'mlp.fc2.weight': 'ffn.layers.1.weight',
    'mlp.fc2.bias': 'ffn.layers.1.bias',
    'ls2.gamma': 'ffn.gamma2.weight',
    # ViT-g's SwiGLU FFN
    'mlp.w12.weight': 'ffn.w12.weight',
    'mlp.w12.bias': 'ffn.w12.bias',
    'mlp.w3.weight': 'ffn.w3.weight',
    'mlp.w3.bias': 'ffn.w3.bias',
}
_BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.(.+)$')


def convert_dinov2_official(
        state_dict: StateDict) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Maps official DINOv2 keys to the mmpretrain layout of :class:`DINOv2`.

    Args:
        state_dict (dict[str, Tensor]): Official keys. Tensors are not copied.

    Returns:
        tuple: The converted state dict and the list of dropped keys
        (``mask_token`` when present).

    Raises:
        KeyError: Naming the first key the mapping does not know.
    """
    converted: 'OrderedDict[str, Tensor]' = OrderedDict()
    dropped: List[str] = []
    for key, value in state_dict.items():
        if key in _DROPPED_KEYS:
            dropped.append(key)
            continue
        if key in _TOP_LEVEL_KEYS:
            converted[_TOP_LEVEL_KEYS[key]] = value
            continue
        match = _BLOCK_KEY.match(key)
        if match is None or match.group(2) not in _BLOCK_KEYS:
            raise KeyError(f'official DINOv2 key "{key}" has no counterpart '
                           'in the mmpretrain layout')
        index, rest = match.groups()
        converted[f'layers.{index}.{_BLOCK_KEYS[rest]}'] = value
    return converted, dropped


def read_dinov2_checkpoint(
        path: str,
        prefix: Optional[str] = None) -> Tuple[StateDict, str, List[str]]:
    """Reads a DINOv2 checkpoint of either layout into the mmpretrain layout.

    Accepts a bare state dict (the official files) or one wrapped under
    ``'state_dict'`` or ``'model'`` (mmengine checkpoints, the converter's
    output), with or without DDP's ``'module.'`` prefix; loaded with
    ``weights_only=True``.

    Args:
        path (str): Local file.
        prefix (str, optional): Keep only keys starting with this (e.g.
            ``'backbone.'`` to take the backbone out of a whole segmentor's
            checkpoint) and strip it. Defaults to None (all keys).

    Returns:
        tuple: (state dict in the mmpretrain layout, the layout found in the
        file: :data:`OFFICIAL_LAYOUT` (keys ``blocks.N.*``) or
        :data:`CONVERTED_LAYOUT` (``layers.N.*``), the keys dropped).

    Raises:
        KeyError: Naming the file, for keys of neither layout.
    """
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{path}: expected a dict of tensors, '
                        f'got {type(checkpoint).__name__}')
    for wrapper in ('state_dict', 'model'):
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    state_dict = {(k[len('module.'):] if k.startswith('module.') else k): v
                  for k, v in checkpoint.items()}
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                      if k.startswith(prefix)}
        if not state_dict:
            raise KeyError(f'{path}: no key starts with prefix "{prefix}"')
    if any(k.startswith('blocks.') for k in state_dict):
        try:
            converted, dropped = convert_dinov2_official(state_dict)
        except KeyError as err:
            raise KeyError(f'{path}: {err.args[0]}') from None
        return converted, OFFICIAL_LAYOUT, dropped
    if not any(k.startswith('layers.') for k in state_dict):
        raise KeyError(f'{path}: not a DINOv2 state dict: no "blocks.N.*" (official) nor '
                       f'"layers.N.*" (mmpretrain) keys; first keys: {list(state_dict)[:5]}')
    return state_dict, CONVERTED_LAYOUT, []
