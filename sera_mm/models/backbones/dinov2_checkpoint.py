"""DINOv2 checkpoints: the official key layout and this package's.

The official files (``dinov2_vit{s,b,l}14_reg4_pretrain.pth``) name keys
after the DINOv2 repository's ``DinoVisionTransformer``; :class:`DINOv2`
is built on mmpretrain's ``VisionTransformer``, whose keys differ. This
module maps one to the other (used by ``DINOv2.init_weights`` and by
``tools/model_converters/dinov2_to_mmpretrain.py``) and reads either kind of
file.

Official key                  -> this package (mmpretrain layout)
``cls_token``, ``pos_embed``, ``register_tokens``   unchanged
``mask_token``                   dropped (used only by DINOv2's iBOT loss)
``patch_embed.proj.*``           ``patch_embed.projection.*``
``blocks.N.norm1.*``             ``layers.N.ln1.*``
``blocks.N.attn.qkv.*``          ``layers.N.attn.qkv.*``
``blocks.N.attn.proj.*``         ``layers.N.attn.proj.*``
``blocks.N.ls1.gamma``           ``layers.N.attn.gamma1.weight``
``blocks.N.norm2.*``             ``layers.N.ln2.*``
``blocks.N.mlp.fc1.*``           ``layers.N.ffn.layers.0.0.*``
``blocks.N.mlp.fc2.*``           ``layers.N.ffn.layers.1.*``
``blocks.N.ls2.gamma``           ``layers.N.ffn.gamma2.weight``
``blocks.N.mlp.w12.*`` (ViT-g)   ``layers.N.ffn.w12.*``
``blocks.N.mlp.w3.*`` (ViT-g)    ``layers.N.ffn.w3.*``
``norm.*``                       ``ln1.*``
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


def detect_dinov2_layout(state_dict: StateDict) -> str:
    """Tells which key layout ``state_dict`` uses.

    Returns:
        str: :data:`OFFICIAL_LAYOUT` (keys ``blocks.N.*``) or
        :data:`CONVERTED_LAYOUT` (keys ``layers.N.*``).

    Raises:
        KeyError: If neither kind of block key is present.
    """
    if any(k.startswith('blocks.') for k in state_dict):
        return OFFICIAL_LAYOUT
    if any(k.startswith('layers.') for k in state_dict):
        return CONVERTED_LAYOUT
    raise KeyError('not a DINOv2 state dict: no "blocks.N.*" (official) nor '
                   '"layers.N.*" (mmpretrain) keys; first keys: '
                   f'{list(state_dict)[:5]}')


def convert_dinov2_official(
        state_dict: StateDict) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Maps official DINOv2 keys to the mmpretrain layout of :class:`DINOv2`.

    Args:
        state_dict (dict[str, Tensor]): Official keys (see the module
            docstring). Tensors are not copied.

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
    output), with or without a ``'module.'`` prefix from DDP. Loaded with
    ``weights_only=True``: tensors and plain containers only.

    Args:
        path (str): Local file.
        prefix (str, optional): Keep only keys starting with this (e.g.
            ``'backbone.'`` to take the backbone out of a whole segmentor's
            checkpoint) and strip it. Defaults to None (all keys).

    Returns:
        tuple: (state dict in the mmpretrain layout, the layout found in the
        file, the keys dropped by the conversion).
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
    try:
        layout = detect_dinov2_layout(state_dict)
    except KeyError as err:
        raise KeyError(f'{path}: {err.args[0]}') from None
    dropped: List[str] = []
    if layout == OFFICIAL_LAYOUT:
        try:
            state_dict, dropped = convert_dinov2_official(state_dict)
        except KeyError as err:
            raise KeyError(f'{path}: {err.args[0]}') from None
    return state_dict, layout, dropped
