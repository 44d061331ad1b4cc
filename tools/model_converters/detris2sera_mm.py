"""Converts a DETRIS checkpoint into a sera_mm checkpoint of a DETRIS config.

Usage:
    python tools/model_converters/detris2sera_mm.py SRC DST [--config CONFIG]

``SRC`` is a checkpoint as DETRIS's ``train.py`` writes it (a dict whose
``state_dict`` holds the DDP model's weights, every key prefixed
``module.``, beside the optimizer and scheduler states) or a bare state
dict. It is read with ``torch.load(weights_only=True)``: nothing in the file
runs. Every key is mapped (the table is ``RULES``); DETRIS's text position
embedding (77 rows) is sliced to the config's context length; the neck's
sentence gates are copied one to one for ``gate='detris'`` or folded into
one linear layer per level for ``gate='folded'``; ``logit_scale`` and
``mask_token``, which sera_mm does not keep, are dropped. A key the table
does not know, and any weight the config's model needs but the file lacks
(or holds in another shape), stops the conversion with an error naming it.

``CONFIG`` is the sera_mm config the checkpoint will be used with; by
default the DETRIS config of the detected model (``detris_dinov2-b_refcoco``,
``-l_refcoco`` or ``-l_refcoco-mixed``, 17 tokens). Pass the RefCOCOg (umd)
config for its 22 tokens. The output ``DST`` (``{'state_dict', 'meta'}``,
written atomically) loads strictly in ``tools/test.py``, ``tools/demo.py``
and as ``load_from``.

Example:
    python tools/model_converters/detris2sera_mm.py refcocog_u_base.pth \\
        pretrain/detris/detris_dinov2-b_refcocog-umd.pth \\
        --config configs/detris/detris_dinov2-b_refcocog-umd.py
"""
import argparse
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from sera_mm.utils.checkpoint import load_weights_only

StateDict = Dict[str, Tensor]
REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

#: (DETRIS key pattern, sera_mm key template); the first match wins.
RULES: List[Tuple[str, str]] = [
    # CLIP text tower and its adapters
    (r'txt_backbone\.transformer\.resblocks\.(\d+)\.adapter\.(.+)', r'text_encoder.adapters.\1.\2'),
    (r'txt_backbone\.(token_embedding\.weight|positional_embedding|text_projection)',
     r'text_encoder.text.\1'),
    (r'txt_backbone\.(transformer\.resblocks\.\d+\.(?:attn\.(?:in_proj_weight|in_proj_bias|'
     r'out_proj\.weight|out_proj\.bias)|ln_[12]\.(?:weight|bias)|'
     r'mlp\.c_(?:fc|proj)\.(?:weight|bias)))', r'text_encoder.text.\1'),
    (r'txt_backbone\.(ln_final\.(?:weight|bias))', r'text_encoder.text.\1'),
    # DINOv2's adapters (the rest of DINOv2 goes through the official mapping)
    (r'dinov2\.blocks\.(\d+)\.adapter\.(.+)', r'backbone.adapters.\1.\2'),
    # neck
    (r'neck\.f([345])_proj\.0\.weight', 'neck.projs.{level}.conv.weight'),
    (r'neck\.f([345])_proj\.1\.(.+)', r'neck.projs.{level}.bn.\2'),
    (r'neck\.txt_proj\.(weight|bias)', r'neck.txt_proj.\1'),
    (r'neck\.fusion([345])\.multihead_attn\.(.+)', r'neck.gates.{level}.attn.\2'),
    (r'neck\.aggr\.0\.weight', 'neck.aggregate.conv.weight'),
    (r'neck\.aggr\.1\.(.+)', r'neck.aggregate.bn.\1'),
    (r'neck\.coordconv\.0\.conv1\.0\.weight', 'neck.refine.0.conv.conv.weight'),
    (r'neck\.coordconv\.0\.conv1\.1\.(.+)', r'neck.refine.0.conv.bn.\1'),
    (r'neck\.coordconv\.1\.0\.weight', 'neck.refine.1.conv.weight'),
    (r'neck\.coordconv\.1\.1\.(.+)', r'neck.refine.1.bn.\1'),
    # decoder
    (r'decoder\.layers\.(\d+)\.norm1\.(.+)', r'decoder.layers.\1.norm_self_in.\2'),
    (r'decoder\.layers\.(\d+)\.norm2\.(.+)', r'decoder.layers.\1.norm_cross_in.\2'),
    (r'decoder\.layers\.(\d+)\.norm3\.(.+)', r'decoder.layers.\1.norm_ffn_in.\2'),
    (r'decoder\.layers\.(\d+)\.self_attn_norm\.(.+)', r'decoder.layers.\1.norm_self_out.\2'),
    (r'decoder\.layers\.(\d+)\.cross_attn_norm\.(.+)', r'decoder.layers.\1.norm_cross_out.\2'),
    (r'decoder\.layers\.(\d+)\.self_attn\.(.+)', r'decoder.layers.\1.self_attn.\2'),
    (r'decoder\.layers\.(\d+)\.multihead_attn\.(.+)', r'decoder.layers.\1.cross_attn.\2'),
    (r'decoder\.layers\.(\d+)\.ffn\.([034])\.(weight|bias)', r'decoder.layers.\1.ffn.\2.\3'),
    (r'decoder\.norm\.(weight|bias)', r'decoder.norm.\1'),
    # projector -> head
    (r'proj\.vis\.([13])\.0\.weight', r'decode_head.upsample.\1.conv.weight'),
    (r'proj\.vis\.([13])\.1\.(.+)', r'decode_head.upsample.\1.bn.\2'),
    (r'proj\.vis\.4\.(weight|bias)', r'decode_head.upsample.4.\1'),
    (r'proj\.txt\.(weight|bias)', r'decode_head.kernel_proj.\1'),
]
#: Weights DETRIS keeps and sera_mm does not (CLIP's contrastive temperature;
#: DINOv2's masked-image token).
DROPPED = ('txt_backbone.logit_scale', 'dinov2.mask_token')
#: DETRIS's neck names its levels f3/f4/f5 and fusion3/4/5.
_LEVEL = {'3': 0, '4': 1, '5': 2}
#: The config used when none is given, by the detected model.
DEFAULT_CONFIGS = {
    'DETRIS-B': 'configs/detris/detris_dinov2-b_refcoco.py',
    'DETRIS-L': 'configs/detris/detris_dinov2-l_refcoco.py',
    'DETRIS-L (mixed)': 'configs/detris/detris_dinov2-l_refcoco-mixed.py',
}


def read_detris_checkpoint(path: str) -> Tuple[StateDict, dict]:
    """Reads DETRIS's weights with ``weights_only=True``.

    Args:
        path (str): DETRIS's ``train.py`` output or a bare state dict.

    Returns:
        tuple: The state dict without DDP's ``module.`` prefix, and the
        file's training record (``epoch``, ``best_iou``, ... when present).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'DETRIS checkpoint not found: {path}')
    ckpt = load_weights_only(path)  # a refused or unreadable file: ValueError naming it
    if not isinstance(ckpt, Mapping):
        raise ValueError(f'{path}: expected a dict, got {type(ckpt).__name__}')
    state = ckpt['state_dict'] if isinstance(ckpt.get('state_dict'), Mapping) else ckpt
    record = {k: v for k, v in ckpt.items()
              if k in ('epoch', 'cur_iou', 'best_iou', 'prec') and state is not ckpt}
    not_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ValueError(f'{path}: the state dict holds non-tensor entries '
                         f'{not_tensors[:10]}; not a DETRIS checkpoint')
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}, record


def detect_model(state_dict: Mapping[str, Tensor]) -> str:
    """Names the DETRIS model of a state dict: 'DETRIS-B', 'DETRIS-L' or
    'DETRIS-L (mixed)' (adapters of width 384)."""
    if 'dinov2.cls_token' not in state_dict:
        raise KeyError('not a DETRIS state dict: no dinov2.cls_token; first keys '
                       f'{list(state_dict)[:5]}')
    width = state_dict['dinov2.cls_token'].shape[-1]
    names = {768: 'DETRIS-B', 1024: 'DETRIS-L'}
    if width not in names:
        raise KeyError(f'DINOv2 width {width} is neither ViT-B (768) nor ViT-L (1024)')
    adapter = [v for k, v in state_dict.items()
               if re.fullmatch(r'dinov2\.blocks\.\d+\.adapter\.D_fc1\.weight', k)]
    if width == 1024 and adapter and adapter[0].shape[0] == 384:
        return 'DETRIS-L (mixed)'
    return names[width]


def convert_detris(state_dict: Mapping[str, Tensor], context_length: int = 17,
                   gate: str = 'detris') -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Maps DETRIS's keys to sera_mm's.

    Args:
        state_dict (Mapping[str, Tensor]): DETRIS's weights, no ``module.``.
        context_length (int): Rows of the text position embedding to keep.
            Defaults to 17.
        gate (str): The neck's gate in the target config, 'detris' (one to
            one) or 'folded' (``fold_attention_gate``). Defaults to 'detris'.

    Returns:
        tuple: The converted state dict and the dropped keys.

    Raises:
        KeyError: Naming every key that no rule maps.
    """
    from sera_mm.models.backbones.dinov2_checkpoint import convert_dinov2_official
    from sera_mm.models.necks import fold_attention_gate
    if gate not in ('detris', 'folded'):
        raise ValueError(f"gate={gate!r}; choose 'detris' or 'folded'")
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    dropped = [k for k in DROPPED if k in state_dict]
    dinov2, unknown = {}, []
    for key, value in state_dict.items():
        if key in DROPPED:
            continue
        if gate == 'folded' and re.match(r'neck\.(txt_proj|fusion[345])\.', key):
            continue  # folded below
        for pattern, template in RULES:
            match = re.fullmatch(pattern, key)
            if match is not None:
                if '{level}' in template:
                    template = template.replace('{level}', str(_LEVEL[match.group(1)]))
                out[match.expand(template)] = value
                break
        else:
            if key.startswith('dinov2.'):
                dinov2[key[len('dinov2.'):]] = value
            else:
                unknown.append(key)
    if unknown:
        raise KeyError(f'{len(unknown)} DETRIS keys have no sera_mm counterpart: {unknown}')
    try:
        converted, dinov2_dropped = convert_dinov2_official(dinov2)
    except KeyError as e:
        raise KeyError(f'DETRIS key dinov2.{e.args[0]}') from None
    dropped += [f'dinov2.{k}' for k in dinov2_dropped]
    out.update((f'backbone.{k}', v) for k, v in converted.items())

    pos_key = 'text_encoder.text.positional_embedding'
    if pos_key in out:
        if out[pos_key].shape[0] < context_length:
            raise ValueError(f'txt_backbone.positional_embedding has {out[pos_key].shape[0]} '
                             f'rows, fewer than context_length={context_length}')
        out[pos_key] = out[pos_key][:context_length].clone()
    f5 = 'neck.projs.2.conv.weight'
    if f5 in out:  # DETRIS's f5_proj is a 1x1 ConvTranspose2d: in x out x 1 x 1
        out[f5] = out[f5].transpose(0, 1).contiguous()
    if gate == 'folded':
        for name, level in _LEVEL.items():
            attn = f'neck.fusion{name}.multihead_attn.'
            weight, bias = fold_attention_gate(
                state_dict['neck.txt_proj.weight'], state_dict['neck.txt_proj.bias'],
                state_dict[attn + 'in_proj_weight'], state_dict[attn + 'in_proj_bias'],
                state_dict[attn + 'out_proj.weight'], state_dict[attn + 'out_proj.bias'])
            out[f'neck.gates.{level}.value.weight'] = weight
            out[f'neck.gates.{level}.value.bias'] = bias
    return out, dropped


def build_config_model(config: str, cfg_options: Optional[dict] = None):
    """The model of a config with its pretrained files switched off (random
    weights: only its key set and shapes are used)."""
    from sera_mm import register_all_modules
    from sera_mm.registry import MODELS
    from sera_mm.utils.config import load_config
    from sera_mm.utils.pretrained import disable_pretrained
    register_all_modules()
    cfg = load_config(config, cfg_options)
    disable_pretrained(cfg.model)
    return MODELS.build(cfg.model), cfg


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a DETRIS checkpoint for a sera_mm DETRIS config')
    parser.add_argument('src', help="DETRIS checkpoint (train.py's .pth or a state dict)")
    parser.add_argument('dst', help='where to write the sera_mm checkpoint')
    parser.add_argument('--config', help='the sera_mm config the checkpoint is for '
                        '(default: the DETRIS config of the detected model, RefCOCO)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from sera_mm.engine.runner import check_state_dict_matches
    from sera_mm.utils import atomic_open
    state_dict, record = read_detris_checkpoint(args.src)
    model_name = detect_model(state_dict)
    config = args.config or osp.join(REPO, DEFAULT_CONFIGS[model_name])
    model, cfg = build_config_model(config)
    context_length = cfg.model.text_encoder.context_length
    gate = cfg.model.neck.get('gate', 'detris')
    converted, dropped = convert_detris(state_dict, context_length, gate)
    check_state_dict_matches(model, {k: tuple(v.shape) for k, v in converted.items()},
                             f'{args.src} converted for {config}')
    meta = dict(converter='tools/model_converters/detris2sera_mm.py',
                source=osp.basename(args.src), detris_model=model_name,
                config=osp.relpath(config, REPO) if config.startswith(REPO) else config,
                context_length=context_length, gate=gate, dropped=dropped,
                # plain numbers only, so that DST loads with weights_only=True
                detris_record={k: float(v) for k, v in record.items()
                               if isinstance(v, (int, float))})
    with atomic_open(args.dst, 'wb') as f:
        torch.save(dict(state_dict=converted, meta=meta), f)
    print(f'{args.src} ({model_name}) -> {args.dst}: {len(converted)} tensors for '
          f'{meta["config"]}; text positions sliced to {context_length}; neck gate '
          f'{gate}; dropped {dropped}')


if __name__ == '__main__':
    main()
