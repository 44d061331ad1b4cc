"""The model of a config at a size that trains in a fraction of a second on
one CPU core, with its structure kept.

What stays: every module type and option of the config (adapters and their
blocks, the depths of both towers, the text tower's activation and
vocabulary, the registers, the patch size, the stored position table and
its resizing mode, frozen and trainable parts, the levels, the gate, the
fusion and its routing, the losses, the pad mask, the context length).
What shrinks: the widths (32), the heads (2), the adapters' widths (16) and
the input (4 x 4 patches). Pretrained files are switched off.
"""
import copy
import os.path as osp

import open_clip
import torch
from mmengine.config import Config, ConfigDict
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from sera_mm.models.backbones import DINOv2
from sera_mm.utils.pretrained import disable_pretrained
from .configs import REPO

#: Width of every shrunk part (backbone, text tower, neck, decoder).
WIDTH = 32
#: Patches per side of a shrunk model's input.
GRID = 4

_SENTENCES = ('the red circle on the left of the big blue square', 'a', 'green one', '')


def _shrink(model: ConfigDict) -> None:
    """Toy sizes, in place (see the module docstring)."""
    text = model.text_encoder
    if text.get('text_cfg') is None:  # a named open_clip tower: its depth, vocabulary
        named = open_clip.get_model_config(text.model_name)
        text.text_cfg = dict(vocab_size=named['text_cfg']['vocab_size'],
                             layers=named['text_cfg']['layers'])
        text.quick_gelu = bool(named.get('quick_gelu', False))
    text.text_cfg.update(width=WIDTH, heads=2)
    text.embed_dim = WIDTH
    if text.get('adapter_cfg') is not None:
        text.adapter_cfg.update(channels=16)
    backbone = model.backbone
    arch = DINOv2._resolve_arch(backbone.arch)
    backbone.arch = dict(arch, embed_dims=WIDTH, num_heads=2, feedforward_channels=2 * WIDTH)
    if backbone.get('adapter_cfg') is not None:
        backbone.adapter_cfg.update(channels=16, text_channels=WIDTH, embed_channels=16,
                                    num_heads=2)
        if backbone.adapter_cfg.get('router_text'):
            backbone.adapter_cfg.sentence_channels = WIDTH
    side = GRID * backbone.get('patch_size', 14)
    # the configs' size_divisor=1 pads nothing; the toy input is side x side
    model.data_preprocessor.update(size=(side, side), size_divisor=None)
    neck = model.neck
    neck.update(in_channels=[WIDTH] * len(neck.in_channels), channels=WIDTH,
                text_channels=WIDTH, num_heads=2)
    if neck.get('fusion_cfg') is not None:
        experts = neck.fusion_cfg.setdefault('expert_cfgs', {})
        experts.setdefault('context', {}).update(num_heads=2, ffn_ratio=2.)
    model.decoder.update(channels=WIDTH, text_channels=WIDTH, num_heads=2,
                         feedforward_channels=WIDTH)
    model.decode_head.update(in_channels=WIDTH, mid_channels=WIDTH, channels=16,
                             text_channels=WIDTH)
    if model.get('presence_head') is not None:
        model.presence_head.update(in_channels=WIDTH, text_channels=WIDTH, channels=16)


def small_model_cfg(path: str) -> ConfigDict:
    """``cfg.model`` of the config at ``path`` (relative to the repo root or
    absolute), shrunk, without pretrained files."""
    cfg = Config.fromfile(path if osp.isabs(path) else osp.join(REPO, path))
    model = copy.deepcopy(cfg.model)
    disable_pretrained(model)
    _shrink(model)
    return model


def _box_mask(size, index: int, generator: torch.Generator) -> torch.Tensor:
    """A soft 1 x H x W mask: a box covering about a fifth of the image (a
    different place per ``index``), 1 inside, a fractional rim, 0 outside,
    as the affine letterbox makes the training masks. A real mask is mostly
    background; a mask of noise at 0.5 on average would let the loss
    gradients of a random model cancel almost exactly."""
    height, width = size
    top = (index * height) // 7 % (height // 2)
    left = (index * width) // 5 % (width // 2)
    mask = torch.zeros(1, height, width)
    mask[:, top:top + height // 2, left:left + width // 2 - 1] = 1.
    rim = torch.rand(1, height, width, generator=generator)
    edge = (mask.bool() ^ mask.bool().roll(1, -1)) | (mask.bool() ^ mask.bool().roll(1, -2))
    return torch.where(edge, rim, mask)


def make_batch(model_cfg: ConfigDict, batch_size: int, seed: int = 0):
    """Normalised-looking images and data samples (sentences of different
    lengths, soft box masks) for ``model_cfg``'s input size.

    Returns:
        tuple: ``(inputs B x 3 x H x W, list of SegDataSample)``.
    """
    size = tuple(model_cfg.data_preprocessor['size'])
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(batch_size):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size,
                                             text=_SENTENCES[i % len(_SENTENCES)]))
        sample.gt_sem_seg = PixelData(data=_box_mask(size, i, generator))
        samples.append(sample)
    return torch.randn(batch_size, 3, *size, generator=generator), samples
