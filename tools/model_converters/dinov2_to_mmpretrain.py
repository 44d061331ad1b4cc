"""Converts an official DINOv2 checkpoint to the key layout of sera_mm's DINOv2.

Usage:
    python tools/model_converters/dinov2_to_mmpretrain.py \
        dinov2_vitb14_reg4_pretrain.pth dinov2_vitb14_reg4_mmpretrain.pth

The output is ``{'state_dict': ..., 'meta': ...}`` with the keys that
``DINOv2`` (mmpretrain's VisionTransformer layout) uses; ``mask_token`` is
dropped. ``DINOv2`` also loads the official file directly through
``init_cfg=dict(type='Pretrained', checkpoint=...)``; converting once only
saves the conversion at every start. The key mapping is
``sera_mm.models.backbones.dinov2_checkpoint.convert_dinov2_official``.
"""
import argparse
import os.path as osp

import torch

from sera_mm.models.backbones.dinov2_checkpoint import (OFFICIAL_LAYOUT,
                                                        read_dinov2_checkpoint)
from sera_mm.utils import atomic_open


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official DINOv2 checkpoint (.pth)')
    parser.add_argument('dst', help='where to save the converted checkpoint')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    state_dict, layout, dropped = read_dinov2_checkpoint(args.src)
    if layout != OFFICIAL_LAYOUT:
        raise SystemExit(f'{args.src} is already in the {layout} layout; nothing to do')
    num_register_tokens = (state_dict['register_tokens'].shape[1]
                           if 'register_tokens' in state_dict else 0)
    meta = dict(source=osp.basename(args.src), converted_from=OFFICIAL_LAYOUT,
                num_register_tokens=num_register_tokens,
                embed_dims=state_dict['cls_token'].shape[-1])
    with atomic_open(args.dst, 'wb') as f:
        torch.save(dict(state_dict=state_dict, meta=meta), f)
    print(f'{args.src} -> {args.dst}: {len(state_dict)} tensors, dropped '
          f'{dropped or "nothing"}, {num_register_tokens} register tokens, '
          f'width {meta["embed_dims"]}')


if __name__ == '__main__':
    main()
