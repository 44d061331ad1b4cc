"""An independent, functional reference of DETRIS (AAAI 2025) for the tests.

DETRIS's model (``model/segmenter.py`` of the official code) written again as
plain functions of its state-dict tensors, so that tests can check sera_mm's
port and checkpoint conversion without DETRIS's code:

* :class:`DetrisArch` and the presets :func:`detris_b`, :func:`detris_l`,
  :func:`detris_l_mixed` (the ``config/refcoco`` yamls) and :func:`tiny`;
* :func:`make_detris_state_dict`: random weights under DETRIS's exact key
  names, shapes and dtypes (no DDP ``module.`` prefix);
* :func:`save_like_detris_train`: a checkpoint laid out as DETRIS's
  ``train.py`` saves it;
* :func:`detris_forward`: ``DETRIS.forward(img, word)`` in eval mode;
* :func:`detris_letterbox_matrices`: the letterbox of DETRIS's data loader.

It imports nothing but torch and the standard library (and OpenCV for the
letterbox, which DETRIS computes with it), by design: it must
not share code with sera_mm (or with DETRIS) to be worth comparing against.
Everything runs in float32, batch first (DETRIS's sequence-first layouts are
permutations of the same numbers).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'DetrisArch', 'PRESETS', 'detris_b', 'detris_l', 'detris_l_mixed', 'tiny',
    'detris_state_dict_spec', 'make_detris_state_dict', 'save_like_detris_train',
    'detris_forward', 'make_detris_tokens', 'SOT_TOKEN', 'EOT_TOKEN'
]

#: CLIP's start / end of text ids (EOT is the largest id of the vocabulary).
SOT_TOKEN = 49406
EOT_TOKEN = 49407

# Epsilons DETRIS inherits from its building blocks, not from the config.
_CLIP_LN_EPS = 1e-5  # model/clip.py LayerNorm (torch default)
_DECODER_LN_EPS = 1e-5  # model/layers.py nn.LayerNorm (torch default)
_CONV_BN_EPS = 1e-5  # model/layers.py conv_layer / deconv_layer
_ADAPTER_BN_EPS = 1e-3  # model/adapter.py BasicConv1d / BasicConv2d
_INTERPOLATE_OFFSET = 0.1  # DinoVisionTransformer(interpolate_offset=0.1)
_ADAPTER_SCALE = 0.2  # the 0.2 * adapter(...) of both towers


@dataclass(frozen=True)
class DetrisArch:
    """The sizes of one DETRIS model.

    Where DETRIS hard-codes a number instead of reading the config, the field
    says which, so that a smaller model (:func:`tiny`) is just other numbers.

    Attributes:
        dino_width: DINOv2 embed dim (768 for ``vit_base``, 1024 for
            ``vit_large``; also the yaml's ``fpn_in``, the Neck's input
            channels, and DenseAligner's ``fc_in_channels``).
        dino_depth: DINOv2 blocks (yaml ``dino_layers``).
        dino_heads: DINOv2 heads (12 / 16, fixed by ``vit_base`` / ``vit_large``).
        patch_size: 14 (segmenter.py ``patch_size=14``).
        num_registers: 4 (segmenter.py ``num_register_tokens=4``; fusion.py's
            ``4 + 1`` and adapter.py's ``split_token=5`` hard-code it too).
        pos_grid: side of the stored position grid, 37 (segmenter.py
            ``img_size=526`` // 14).
        dino_mlp_ratio: 4.
        dino_ln_eps: 1e-6 (vision_transformer.py ``norm_layer``).
        visual_adapter_blocks: DINOv2 blocks with a DenseAligner (yaml
            ``visual_adapter_layer``).
        visual_adapter_width: DenseAligner ``in_channels`` d (yaml
            ``visual_adapter_dim``); branches are d//2, d//16 -> d//4,
            d//16 -> d//4 (block.py).
        cross_embed_dim: CrossModalAttention embed dim, 128 (adapter.py
            DenseAligner default ``embed_dim=128``, never overridden).
        cross_heads: CrossModalAttention heads, 8 (DenseAligner default
            ``num_heads=8``). Its ``text_dim`` (default 512) is ``text_width``:
            it projects the ln_final word features.
        text_width: CLIP text width, 512 (read from the CLIP checkpoint's
            ``ln_final.weight``).
        text_layers: CLIP text blocks, 12 (from the checkpoint; fusion.py's
            ``Fusion(num_layers=12)`` default hard-codes how many run).
        text_heads: 8 (clip.py ``build_model``: width // 64).
        vocab_size: 49408 (checkpoint ``token_embedding.weight``).
        context_length: stored text positions, 77 (checkpoint
            ``positional_embedding``); only the first ``word_len`` are used.
        embed_dim: CLIP's joint embed dim, 512 (checkpoint
            ``text_projection``): the width of the sentence feature
            ``state``, hence ``Neck.txt_proj``'s hard-coded input 512
            (layers.py) and the Projector's ``word_dim`` (yaml ``word_dim``).
        text_adapter_blocks: CLIP blocks with a TextAdapter (yaml
            ``txtual_adapter_layer``).
        text_adapter_width: TextAdapter ``in_channels`` d (yaml
            ``txt_adapter_dim``), branches as the DenseAligner's.
        output_dinov2: DINOv2 block indices whose raw output feeds the Neck
            (yaml ``output_dinov2``), then ``norm`` of the last block.
        neck_width: C, 512: yaml ``fpn_out[1]`` (the only fpn_out entry
            used), the Neck's CrossAttn ``d_model`` (layers.py default 512),
            the Decoder's ``vis_dim`` and, through the decoder's
            cross-attention (kdim = d_model), equal to ``text_width``.
        neck_heads: Neck CrossAttn heads, 8 (layers.py ``Neck(nhead=8)``
            default).
        dec_layers: yaml ``num_layers`` (3).
        dec_heads: yaml ``num_head`` (8).
        dec_ffn: yaml ``dim_ffn`` (512).
        proj_in_dim: Projector ``in_dim`` = yaml ``vis_dim // 2`` (256).
        proj_kernel: Projector's dynamic kernel, 3 (segmenter.py).
        word_len: tokens per expression (yaml ``word_len``), also the size
            of the text causal mask.
    """
    dino_width: int = 768
    dino_depth: int = 12
    dino_heads: int = 12
    patch_size: int = 14
    num_registers: int = 4
    pos_grid: int = 37
    dino_mlp_ratio: int = 4
    dino_ln_eps: float = 1e-6
    visual_adapter_blocks: Tuple[int, ...] = (1, 3, 5, 7, 9, 11)
    visual_adapter_width: int = 128
    cross_embed_dim: int = 128
    cross_heads: int = 8
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    vocab_size: int = 49408
    context_length: int = 77
    embed_dim: int = 512
    text_adapter_blocks: Tuple[int, ...] = (1, 3, 5, 7, 9, 11)
    text_adapter_width: int = 64
    output_dinov2: Tuple[int, ...] = (4, 8)
    neck_width: int = 512
    neck_heads: int = 8
    dec_layers: int = 3
    dec_heads: int = 8
    dec_ffn: int = 512
    proj_in_dim: int = 256
    proj_kernel: int = 3
    word_len: int = 17

    def __post_init__(self) -> None:
        for name in ('visual_adapter_blocks', 'text_adapter_blocks', 'output_dinov2'):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        checks = {
            'dino_heads must divide dino_width': self.dino_width % self.dino_heads == 0,
            'text_heads must divide text_width': self.text_width % self.text_heads == 0,
            'cross_heads must divide cross_embed_dim':
                self.cross_embed_dim % self.cross_heads == 0,
            'neck_heads must divide neck_width': self.neck_width % self.neck_heads == 0,
            'dec_heads must divide neck_width': self.neck_width % self.dec_heads == 0,
            'neck_width must equal text_width (decoder cross-attention)':
                self.neck_width == self.text_width,
            'neck_width must be a multiple of 4 (pos2d)': self.neck_width % 4 == 0,
            'proj_in_dim must be neck_width // 2': 2 * self.proj_in_dim == self.neck_width,
            'adapter widths must be multiples of 16 (branch widths sum to d)':
                self.visual_adapter_width % 16 == 0 and self.text_adapter_width % 16 == 0,
            'visual adapter / output blocks must be < dino_depth':
                all(i < self.dino_depth
                    for i in self.visual_adapter_blocks + self.output_dinov2),
            'text adapter blocks must be < text_layers':
                all(i < self.text_layers for i in self.text_adapter_blocks),
            'word_len must be <= context_length': self.word_len <= self.context_length,
        }
        failed = [msg for msg, ok in checks.items() if not ok]
        if failed:
            raise ValueError('DetrisArch: ' + '; '.join(failed))

    @property
    def num_prefix_tokens(self) -> int:
        """cls + registers: DenseAligner's ``split_token`` (5 in DETRIS)."""
        return 1 + self.num_registers

    def output_side(self, image_side: int) -> int:
        """Side of the logits for a square ``image_side`` input (4 x patches)."""
        return 4 * (image_side // self.patch_size)


def detris_b() -> DetrisArch:
    """DETRIS-B (``config/refcoco/DETRIS_base.yaml``): DINOv2-B/14 + CLIP-B/16 text."""
    return DetrisArch()


def detris_l() -> DetrisArch:
    """DETRIS-L (``config/refcoco/DETRIS_large.yaml``): DINOv2-L/14 + CLIP-B/16 text."""
    return DetrisArch(dino_width=1024, dino_depth=24, dino_heads=16,
                      visual_adapter_blocks=(2, 6, 10, 14, 18, 22),
                      output_dinov2=(8, 16), visual_adapter_width=128,
                      text_adapter_width=64)


def detris_l_mixed() -> DetrisArch:
    """DETRIS-L trained on the mixed set (``DETRIS_large_mixed.yaml``).

    Adapters of width 384 in DINOv2 blocks 1..23 and CLIP blocks 1..11; the
    DenseAligner's cross-attention stays 128 wide.
    """
    return DetrisArch(dino_width=1024, dino_depth=24, dino_heads=16,
                      visual_adapter_blocks=tuple(range(1, 24)),
                      visual_adapter_width=384,
                      text_adapter_blocks=tuple(range(1, 12)),
                      text_adapter_width=384, output_dinov2=(8, 16))


def tiny() -> DetrisArch:
    """A small model with DETRIS's structure, for fast CPU tests.

    The vocabulary stays CLIP's (49408) so real CLIP token ids can be fed;
    the stored position grid is 8 x 8, i.e. 112 x 112 inputs need no
    interpolation. The DenseAligner's cross-attention is shrunk too (32
    wide, 4 heads), where DETRIS keeps 128 / 8 for every model.
    """
    return DetrisArch(dino_width=64, dino_depth=4, dino_heads=4, pos_grid=8,
                      visual_adapter_blocks=(1, 3), visual_adapter_width=32,
                      cross_embed_dim=32, cross_heads=4,
                      text_width=64, text_layers=2, text_heads=4, embed_dim=64,
                      text_adapter_blocks=(1,), text_adapter_width=32,
                      output_dinov2=(1, 2), neck_width=64, neck_heads=4,
                      dec_layers=1, dec_heads=4, dec_ffn=64, proj_in_dim=32)


PRESETS = {'detris_b': detris_b, 'detris_l': detris_l,
           'detris_l_mixed': detris_l_mixed, 'tiny': tiny}

# --------------------------------------------------------------------------
# The state dict: key names, shapes and how to fill them
# --------------------------------------------------------------------------

# One entry per key: (name, shape, how to draw it, a scale for that draw).
_Entry = Tuple[str, Tuple[int, ...], str, float]


def _linear_spec(prefix: str, out_f: int, in_f: int, bias: bool = True) -> List[_Entry]:
    spec = [(prefix + 'weight', (out_f, in_f), 'normal', in_f ** -0.5)]
    if bias:
        spec.append((prefix + 'bias', (out_f,), 'bias', 0.02))
    return spec


def _norm_spec(prefix: str, dim: int) -> List[_Entry]:
    return [(prefix + 'weight', (dim,), 'one', 0.1), (prefix + 'bias', (dim,), 'bias', 0.02)]


def _bn_spec(prefix: str, dim: int) -> List[_Entry]:
    return _norm_spec(prefix, dim) + [
        (prefix + 'running_mean', (dim,), 'normal', 0.1),
        (prefix + 'running_var', (dim,), 'var', 0.0),
        (prefix + 'num_batches_tracked', (), 'count', 0.0),
    ]


def _conv_spec(prefix: str, out_c: int, in_c: int, kernel: Tuple[int, ...],
               bias: bool) -> List[_Entry]:
    fan_in = in_c * math.prod(kernel)
    spec = [(prefix + 'weight', (out_c, in_c) + kernel, 'normal', fan_in ** -0.5)]
    if bias:
        spec.append((prefix + 'bias', (out_c,), 'bias', 0.02))
    return spec


def _mha_spec(prefix: str, dim: int) -> List[_Entry]:
    """nn.MultiheadAttention with kdim = vdim = embed_dim (packed in_proj)."""
    return [(prefix + 'in_proj_weight', (3 * dim, dim), 'normal', dim ** -0.5),
            (prefix + 'in_proj_bias', (3 * dim,), 'bias', 0.02)
            ] + _linear_spec(prefix + 'out_proj.', dim, dim)


def _conv_bn_spec(prefix: str, out_c: int, in_c: int, kernel: int) -> List[_Entry]:
    """layers.py ``conv_layer``: Sequential(Conv2d(bias=False), BN, ReLU)."""
    return (_conv_spec(prefix + '0.', out_c, in_c, (kernel, kernel), bias=False)
            + _bn_spec(prefix + '1.', out_c))


def _dense_branches_spec(prefix: str, width: int, conv_dims: int) -> List[_Entry]:
    """adapter.py's three dense branches (BasicConv{1,2}d: conv with bias + BN)."""
    c1, c3r, c3, c5r, c5 = width // 2, width // 16, width // 4, width // 16, width // 4

    def basic(p: str, out_c: int, in_c: int, k: int) -> List[_Entry]:
        return (_conv_spec(p + 'conv.', out_c, in_c, (k,) * conv_dims, bias=True)
                + _bn_spec(p + 'bn.', out_c))

    return (basic(prefix + 'dense_branch1.', c1, width, 1)
            + basic(prefix + 'dense_branch2.0.', c3r, width + c1, 1)
            + basic(prefix + 'dense_branch2.1.', c3, c3r, 3)
            + basic(prefix + 'dense_branch3.0.', c5r, width + c1 + c3, 1)
            + basic(prefix + 'dense_branch3.1.', c5, c5r, 5))


def _text_spec(arch: DetrisArch) -> List[_Entry]:
    p, d = 'txt_backbone.', arch.text_width
    spec: List[_Entry] = [
        (p + 'positional_embedding', (arch.context_length, d), 'normal', 0.02),
        (p + 'text_projection', (d, arch.embed_dim), 'normal', d ** -0.5),
        (p + 'logit_scale', (), 'logit_scale', 0.0),
    ]
    for i in range(arch.text_layers):
        b = f'{p}transformer.resblocks.{i}.'
        spec += (_mha_spec(b + 'attn.', d) + _norm_spec(b + 'ln_1.', d)
                 + _linear_spec(b + 'mlp.c_fc.', 4 * d, d)
                 + _linear_spec(b + 'mlp.c_proj.', d, 4 * d) + _norm_spec(b + 'ln_2.', d))
        if i in arch.text_adapter_blocks:
            a, w = b + 'adapter.', arch.text_adapter_width
            spec += (_dense_branches_spec(a, w, conv_dims=1)
                     + _linear_spec(a + 'D_fc1.', w, d) + _linear_spec(a + 'D_fc2.', d, w))
    spec.append((p + 'token_embedding.weight', (arch.vocab_size, d), 'normal', 0.02))
    return spec + _norm_spec(p + 'ln_final.', d)


def _dino_spec(arch: DetrisArch) -> List[_Entry]:
    p, d, k = 'dinov2.', arch.dino_width, arch.patch_size
    spec: List[_Entry] = [
        (p + 'cls_token', (1, 1, d), 'normal', 0.1),
        (p + 'pos_embed', (1, arch.pos_grid ** 2 + 1, d), 'normal', 0.2),
        (p + 'register_tokens', (1, arch.num_registers, d), 'normal', 0.1),
        (p + 'mask_token', (1, d), 'normal', 0.1),
    ] + _conv_spec(p + 'patch_embed.proj.', d, 3, (k, k), bias=True)
    hidden = d * arch.dino_mlp_ratio
    for i in range(arch.dino_depth):
        b = f'{p}blocks.{i}.'
        spec += (_norm_spec(b + 'norm1.', d) + _linear_spec(b + 'attn.qkv.', 3 * d, d)
                 + _linear_spec(b + 'attn.proj.', d, d)
                 + [(b + 'ls1.gamma', (d,), 'gamma', 0.0)] + _norm_spec(b + 'norm2.', d)
                 + _linear_spec(b + 'mlp.fc1.', hidden, d)
                 + _linear_spec(b + 'mlp.fc2.', d, hidden)
                 + [(b + 'ls2.gamma', (d,), 'gamma', 0.0)])
        if i in arch.visual_adapter_blocks:
            a, w, e = b + 'adapter.', arch.visual_adapter_width, arch.cross_embed_dim
            spec += (_dense_branches_spec(a, w, conv_dims=2)
                     + _linear_spec(a + 'D_fc1.', w, d) + _linear_spec(a + 'D_fc2.', d, w)
                     + _mha_spec(a + 'cross.multihead_attn.', e)
                     + _linear_spec(a + 'cross.image_proj.', e, w)
                     + _linear_spec(a + 'cross.text_proj.', e, arch.text_width)
                     + _linear_spec(a + 'cross.back_proj.', w, e))
    return spec + _norm_spec(p + 'norm.', d)


def _head_spec(arch: DetrisArch) -> List[_Entry]:
    c, d = arch.neck_width, arch.dino_width
    spec: List[_Entry] = []
    for level in (3, 4, 5):
        spec += _mha_spec(f'neck.fusion{level}.multihead_attn.', c)
    spec += (_linear_spec('neck.txt_proj.', c, arch.embed_dim)
             + _conv_bn_spec('neck.f3_proj.', c, d, 1) + _conv_bn_spec('neck.f4_proj.', c, d, 1))
    # ConvTranspose2d keeps its weight as in_channels x out_channels x k x k.
    spec += [('neck.f5_proj.0.weight', (d, c, 1, 1), 'normal', d ** -0.5)]
    spec += _bn_spec('neck.f5_proj.1.', c)
    spec += (_conv_bn_spec('neck.aggr.', c, 3 * c, 1)
             + _conv_bn_spec('neck.coordconv.0.conv1.', c, c + 2, 3)
             + _conv_bn_spec('neck.coordconv.1.', c, c, 3))
    for i in range(arch.dec_layers):
        b = f'decoder.layers.{i}.'
        spec += (_norm_spec(b + 'self_attn_norm.', c) + _norm_spec(b + 'cross_attn_norm.', c)
                 + _mha_spec(b + 'self_attn.', c) + _mha_spec(b + 'multihead_attn.', c)
                 + _linear_spec(b + 'ffn.0.', arch.dec_ffn, c)
                 + _norm_spec(b + 'ffn.3.', arch.dec_ffn)
                 + _linear_spec(b + 'ffn.4.', c, arch.dec_ffn))
        for n in (1, 2, 3):
            spec += _norm_spec(f'{b}norm{n}.', c)
    spec += _norm_spec('decoder.norm.', c)
    m, k = arch.proj_in_dim, arch.proj_kernel
    spec += (_conv_bn_spec('proj.vis.1.', 2 * m, 2 * m, 3)
             + _conv_bn_spec('proj.vis.3.', m, 2 * m, 3)
             + _conv_spec('proj.vis.4.', m, m, (1, 1), bias=True))
    # The dynamic kernel's weights are scaled so that the logits come out ~N(0, 1).
    spec += [('proj.txt.weight', (m * k * k + 1, arch.embed_dim), 'normal',
              2.0 * (arch.embed_dim * m * k * k) ** -0.5),
             ('proj.txt.bias', (m * k * k + 1,), 'bias', 0.02)]
    return spec


def detris_state_dict_spec(arch: DetrisArch) -> 'OrderedDict[str, Tuple[int, ...]]':
    """Every key of ``DETRIS(cfg).state_dict()`` with its shape, in DETRIS's order.

    DETRIS's module order is txt_backbone, fusion (no parameters), dinov2,
    neck, decoder, proj; CLIP's ``visual`` tower is deleted by
    ``build_model``. All tensors are float32 except the BatchNorms'
    ``num_batches_tracked`` (int64 scalars).
    """
    spec = _text_spec(arch) + _dino_spec(arch) + _head_spec(arch)
    return OrderedDict((name, shape) for name, shape, _, _ in spec)


def make_detris_state_dict(arch: DetrisArch, seed: int = 0) -> 'OrderedDict[str, Tensor]':
    """Random weights under DETRIS's key names, shapes and dtypes.

    Values come from a ``torch.Generator`` seeded by ``seed`` (so the same
    seed gives the same tensors), scaled so that activations stay O(1)
    through the whole network: weights ~ N(0, 1/fan_in), LayerNorm / BN
    weights ~ 1 + N(0, 0.1), biases ~ N(0, 0.02), LayerScale gammas ~
    U(0.1, 1), BN running_var ~ U(0.5, 1.5). The keys sera_mm drops
    (``txt_backbone.logit_scale``, ``dinov2.mask_token``, the 77-row
    text ``positional_embedding``) are included, and ``neck.f5_proj.0.weight``
    has ConvTranspose2d's in x out x 1 x 1 layout.

    Args:
        arch: The model's sizes.
        seed: Seed of the generator.

    Returns:
        An OrderedDict of contiguous CPU tensors, without the DDP
        ``module.`` prefix.
    """
    gen = torch.Generator().manual_seed(seed)
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    for name, shape, kind, scale in _text_spec(arch) + _dino_spec(arch) + _head_spec(arch):
        if kind == 'count':
            out[name] = torch.randint(1, 100000, (), generator=gen, dtype=torch.int64)
            continue
        if kind in ('gamma', 'var'):
            lo, hi = (0.1, 1.0) if kind == 'gamma' else (0.5, 1.5)
            value = lo + (hi - lo) * torch.rand(shape, generator=gen)
        elif kind == 'logit_scale':
            value = math.log(1 / 0.07) + 0.01 * torch.randn(shape, generator=gen)
        else:
            value = scale * torch.randn(shape, generator=gen)
            if kind == 'one':
                value = value + 1.0
        out[name] = value
    return out


def save_like_detris_train(path: str, state_dict: Dict[str, Tensor], epoch: int = 50,
                           cur_iou: float = 0.7512, best_iou: float = 0.7534) -> None:
    """Writes ``state_dict`` as DETRIS's ``train.py`` saves ``last_model.pth``.

    The file holds ``epoch``, ``cur_iou``, ``best_iou``, ``prec`` (``Pr@50``
    .. ``Pr@90``), ``state_dict`` (DDP ``module.`` prefixed keys),
    ``optimizer`` (a real ``Adam`` state dict, after one step, over two
    param groups with ``initial_lr`` like DETRIS's) and ``scheduler`` (a real
    ``MultiStepLR`` state dict, whose milestones are a ``collections.Counter``).
    It loads with ``torch.load(path, weights_only=True)``.

    Args:
        path: Where to write.
        state_dict: Unprefixed model weights (e.g. from
            :func:`make_detris_state_dict`).
        epoch: Saved epoch.
        cur_iou: Saved current IoU.
        best_iou: Saved best IoU.
    """
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(4, 3, generator=gen)),
              torch.nn.Parameter(torch.randn(5, generator=gen))]
    # Two groups with 'initial_lr', as DETRIS's build_segmenter param_list.
    groups = [{'params': params[:1], 'initial_lr': 1e-4},
              {'params': params[1:], 'initial_lr': 1e-4}]
    optimizer = torch.optim.Adam(groups, lr=1e-4, weight_decay=0.)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[35], gamma=0.1)
    loss = (params[0] ** 2).sum() + params[1].sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    prec = {f'Pr@{t * 10}': p for t, p in zip(range(5, 10), (0.85, 0.81, 0.74, 0.6, 0.3))}
    torch.save({
        'epoch': epoch,
        'cur_iou': float(cur_iou),
        'best_iou': float(best_iou),
        'prec': prec,
        'state_dict': OrderedDict(('module.' + k, v) for k, v in state_dict.items()),
        'optimizer': optimizer.state_dict(),
        'scheduler': scheduler.state_dict(),
    }, path)


def detris_letterbox_matrices(h: int, w: int, out_h: int, out_w: int) -> tuple:
    """DETRIS's letterbox (``getTransformMat`` of its data loader), written out
    from its description: scale to fit, centred, fractional offsets.

    Returns:
        tuple: ``(matrix, inverse)``, 2 x 3; ``matrix`` maps original to
        letterboxed pixel coordinates.
    """
    import cv2
    import numpy as np
    scale = min(out_h / h, out_w / w)
    new_h, new_w = h * scale, w * scale
    bias_x, bias_y = (out_w - new_w) / 2., (out_h - new_h) / 2.
    src = np.array([[0, 0], [w, 0], [0, h]], np.float32)
    dst = np.array([[bias_x, bias_y], [new_w + bias_x, bias_y],
                    [bias_x, new_h + bias_y]], np.float32)
    return cv2.getAffineTransform(src, dst), cv2.getAffineTransform(dst, src)


def make_detris_tokens(lengths: Sequence[int], word_len: int, seed: int = 0) -> Tensor:
    """Token rows like DETRIS's tokenizer output: SOT, words, EOT, zero padding.

    Args:
        lengths: Number of word ids per row; a row with ``word_len - 2``
            words fills ``word_len`` exactly.
        word_len: Row length.
        seed: Seed for the word ids (drawn in [1, 49405]).

    Returns:
        B x word_len int64 ids.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = torch.zeros(len(lengths), word_len, dtype=torch.int64)
    for i, n in enumerate(lengths):
        if not 0 <= n <= word_len - 2:
            raise ValueError(f'{n} words do not fit in {word_len} tokens with SOT and EOT')
        rows[i, 0] = SOT_TOKEN
        rows[i, 1:n + 1] = torch.randint(1, SOT_TOKEN, (n,), generator=gen)
        rows[i, n + 1] = EOT_TOKEN
    return rows


# --------------------------------------------------------------------------
# Functional building blocks
# --------------------------------------------------------------------------


def _linear(sd: Dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    return F.linear(x, sd[prefix + 'weight'], sd.get(prefix + 'bias'))


def _layer_norm(sd: Dict[str, Tensor], prefix: str, x: Tensor, eps: float) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[prefix + 'weight'], sd[prefix + 'bias'], eps)


def _batch_norm(sd: Dict[str, Tensor], prefix: str, x: Tensor, eps: float) -> Tensor:
    return F.batch_norm(x, sd[prefix + 'running_mean'], sd[prefix + 'running_var'],
                        sd[prefix + 'weight'], sd[prefix + 'bias'], False, 0.0, eps)


def _attention(q: Tensor, k: Tensor, v: Tensor, heads: int, bias: Optional[Tensor] = None,
               fused: bool = False) -> Tensor:
    """Softmax attention of B x Lq x E queries on B x Lk x E keys / values.

    Args:
        q, k, v: Projected queries, keys and values.
        heads: Number of heads.
        bias: Added to the B x heads x Lq x Lk logits (-inf masks a key).
        fused: Use ``F.scaled_dot_product_attention`` instead of the explicit
            softmax(q k^T / sqrt(d)) v. Both are the same function; the
            fused kernel rounds differently (~5e-7), so it is used where
            DETRIS's own module calls it.
    """
    b, lq, e = q.shape
    lk = k.shape[1]
    dh = e // heads
    q = q.reshape(b, lq, heads, dh).transpose(1, 2)
    k = k.reshape(b, lk, heads, dh).transpose(1, 2)
    v = v.reshape(b, lk, heads, dh).transpose(1, 2)
    if fused:
        out = F.scaled_dot_product_attention(q, k, v, bias)
    else:
        logits = (q * dh ** -0.5) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        out = logits.softmax(-1) @ v
    return out.transpose(1, 2).reshape(b, lq, e)


def _mha(sd: Dict[str, Tensor], prefix: str, query: Tensor, key: Tensor, value: Tensor,
         heads: int, bias: Optional[Tensor] = None, fused: bool = False) -> Tensor:
    """nn.MultiheadAttention (eval) with batch-first inputs.

    ``fused`` as in :func:`_attention`: torch's MHA takes the fused kernel
    when called with ``need_weights=False``.
    """
    wq, wk, wv = sd[prefix + 'in_proj_weight'].chunk(3)
    bq, bk, bv = sd[prefix + 'in_proj_bias'].chunk(3)
    out = _attention(F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv),
                     heads, bias, fused)
    return _linear(sd, prefix + 'out_proj.', out)


def _conv_bn_relu(sd: Dict[str, Tensor], prefix: str, x: Tensor, padding: int = 0) -> Tensor:
    """layers.py ``conv_layer``: bias-free Conv2d, BN (eps 1e-5), ReLU."""
    x = F.conv2d(x, sd[prefix + '0.weight'], None, padding=padding)
    return F.relu(_batch_norm(sd, prefix + '1.', x, _CONV_BN_EPS))


def _basic_conv(sd: Dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """adapter.py BasicConv1d / BasicConv2d: conv with bias, BN (eps 1e-3), ReLU."""
    weight = sd[prefix + 'conv.weight']
    conv = F.conv1d if weight.dim() == 3 else F.conv2d
    x = conv(x, weight, sd[prefix + 'conv.bias'], padding=weight.shape[-1] // 2)
    return F.relu(_batch_norm(sd, prefix + 'bn.', x, _ADAPTER_BN_EPS))


def _dense_branches(sd: Dict[str, Tensor], prefix: str, xs: Tensor) -> Tensor:
    """The adapters' three densely connected branches, concatenated (d channels)."""
    b1 = _basic_conv(sd, prefix + 'dense_branch1.', xs)
    b2 = _basic_conv(sd, prefix + 'dense_branch2.1.',
                     _basic_conv(sd, prefix + 'dense_branch2.0.', torch.cat([xs, b1], 1)))
    b3 = _basic_conv(sd, prefix + 'dense_branch3.1.',
                     _basic_conv(sd, prefix + 'dense_branch3.0.', torch.cat([xs, b1, b2], 1)))
    return torch.cat([b1, b2, b3], 1)


def _text_adapter(sd: Dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """adapter.py TextAdapter on B x L x D; the convolutions skip SOT."""
    x0 = F.relu(_linear(sd, prefix + 'D_fc1.', x))
    branches = _dense_branches(sd, prefix, x0[:, 1:].transpose(1, 2)).transpose(1, 2)
    # SOT's row becomes 2 * x0, every other token branches + x0.
    out = torch.cat([x0[:, :1], branches], 1) + x0
    return _linear(sd, prefix + 'D_fc2.', out)


def _dense_aligner(sd: Dict[str, Tensor], prefix: str, x: Tensor, words: Tensor,
                   arch: DetrisArch, side: int) -> Tensor:
    """adapter.py DenseAligner on a DINOv2 block's norm2 output.

    DETRIS recovers the grid side as ``int(sqrt(tokens - 1))``, registers
    included, which equals the patch side for sides >= 2.
    """
    split = arch.num_prefix_tokens
    x0 = F.relu(_linear(sd, prefix + 'D_fc1.', x))
    b, _, d = x0.shape
    xs = x0[:, split:].transpose(1, 2).reshape(b, d, side, side)
    spatial = (_dense_branches(sd, prefix, xs) + xs).flatten(2).transpose(1, 2)
    # CrossModalAttention: patch tokens attend to all word features, padding
    # included (no mask), and the result replaces them (no residual).
    c = prefix + 'cross.'
    query = _linear(sd, c + 'image_proj.', spatial)
    text = _linear(sd, c + 'text_proj.', words)
    fused = _mha(sd, c + 'multihead_attn.', query, text, text, arch.cross_heads)
    spatial = _linear(sd, c + 'back_proj.', fused)
    out = torch.cat([x0[:, :split], spatial], 1) + x0
    return _linear(sd, prefix + 'D_fc2.', out)


def _quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


def _text_tower(sd: Dict[str, Tensor], arch: DetrisArch,
                tokens: Tensor) -> Tuple[Tensor, Tensor]:
    """CLIP's text transformer with TextAdapters (model/fusion.py, model/clip.py).

    Returns:
        B x L x text_width word features (ln_final of every token) and the
        B x embed_dim sentence feature (EOT's word feature @ text_projection).
    """
    p = 'txt_backbone.'
    length = tokens.shape[1]
    x = F.embedding(tokens, sd[p + 'token_embedding.weight'])
    x = x + sd[p + 'positional_embedding'][:length]
    causal = torch.full((length, length), float('-inf')).triu(1)
    for i in range(arch.text_layers):
        b = f'{p}transformer.resblocks.{i}.'
        h = _layer_norm(sd, b + 'ln_1.', x, _CLIP_LN_EPS)
        # model/clip.py calls its attention with need_weights=False.
        x = x + _mha(sd, b + 'attn.', h, h, h, arch.text_heads, causal, fused=True)
        h = _layer_norm(sd, b + 'ln_2.', x, _CLIP_LN_EPS)
        mlp = _linear(sd, b + 'mlp.c_proj.', _quick_gelu(_linear(sd, b + 'mlp.c_fc.', h)))
        if i in arch.text_adapter_blocks:
            # DETRIS feeds the adapter the residual stream before ln_2
            # (model/clip.py ResidualAttentionBlock.forward).
            x = x + mlp + _ADAPTER_SCALE * _text_adapter(sd, b + 'adapter.', x)
        else:
            x = x + mlp
    words = _layer_norm(sd, p + 'ln_final.', x, _CLIP_LN_EPS)
    eot = words[torch.arange(tokens.shape[0]), tokens.argmax(-1)]
    return words, eot @ sd[p + 'text_projection']


def _dino_pos_embed(pos_embed: Tensor, num_patches: int, rows: int, cols: int,
                    patch: int) -> Tensor:
    """DinoVisionTransformer.interpolate_pos_encoding for a rows x cols image."""
    stored = pos_embed.shape[1] - 1
    if num_patches == stored and rows == cols:
        return pos_embed
    side = int(math.sqrt(stored))
    r0, c0 = rows // patch, cols // patch
    grid = pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    # A scale factor with DINOv2's 0.1 offset, not a size: the bicubic weights
    # depend on it.
    grid = F.interpolate(grid, scale_factor=((r0 + _INTERPOLATE_OFFSET) / side,
                                             (c0 + _INTERPOLATE_OFFSET) / side),
                         mode='bicubic', antialias=False)
    if grid.shape[-2:] != (r0, c0):
        raise ValueError(f'interpolated grid {tuple(grid.shape[-2:])} != {(r0, c0)}')
    grid = grid.permute(0, 2, 3, 1).reshape(1, r0 * c0, -1)
    return torch.cat([pos_embed[:, :1], grid], 1)


def _dino_tower(sd: Dict[str, Tensor], arch: DetrisArch, images: Tensor,
                words: Tensor) -> List[Tensor]:
    """DINOv2 with DenseAligners; the feature maps handed to the Neck.

    Returns:
        The raw outputs of the blocks in ``output_dinov2`` then ``norm`` of
        the last block, patch tokens only, as B x dino_width x h x w.
    """
    p, heads = 'dinov2.', arch.dino_heads
    b, _, rows, cols = images.shape
    side = rows // arch.patch_size
    x = F.conv2d(images, sd[p + 'patch_embed.proj.weight'], sd[p + 'patch_embed.proj.bias'],
                 stride=arch.patch_size).flatten(2).transpose(1, 2)
    x = torch.cat([sd[p + 'cls_token'].expand(b, -1, -1), x], 1)
    x = x + _dino_pos_embed(sd[p + 'pos_embed'], x.shape[1] - 1, rows, cols, arch.patch_size)
    # Registers go in after the position embedding, between cls and patches.
    x = torch.cat([x[:, :1], sd[p + 'register_tokens'].expand(b, -1, -1), x[:, 1:]], 1)
    feats = []
    for i in range(arch.dino_depth):
        blk = f'{p}blocks.{i}.'
        h = _layer_norm(sd, blk + 'norm1.', x, arch.dino_ln_eps)
        q, k, v = _linear(sd, blk + 'attn.qkv.', h).chunk(3, dim=-1)
        attn = _linear(sd, blk + 'attn.proj.', _attention(q, k, v, heads))
        x = x + attn * sd[blk + 'ls1.gamma']
        h = _layer_norm(sd, blk + 'norm2.', x, arch.dino_ln_eps)
        out = _linear(sd, blk + 'mlp.fc2.', F.gelu(_linear(sd, blk + 'mlp.fc1.', h)))
        if i in arch.visual_adapter_blocks:
            # The adapter also reads norm2(x), and ls2 scales mlp + 0.2 * adapter
            # (model/dinov2/layers/block.py Block.forward).
            out = out + _ADAPTER_SCALE * _dense_aligner(sd, blk + 'adapter.', h, words, arch, side)
        x = x + out * sd[blk + 'ls2.gamma']
        if i in arch.output_dinov2:
            feats.append(x)
    feats.append(_layer_norm(sd, p + 'norm.', x, arch.dino_ln_eps))
    n = arch.num_prefix_tokens
    return [f[:, n:].transpose(1, 2).reshape(b, -1, side, cols // arch.patch_size)
            for f in feats]


def _neck(sd: Dict[str, Tensor], arch: DetrisArch, feats: List[Tensor],
          sentence: Tensor) -> Tensor:
    """layers.py Neck: project the three maps, gate them by the sentence, aggregate."""
    v3 = _conv_bn_relu(sd, 'neck.f3_proj.', feats[0])
    v4 = _conv_bn_relu(sd, 'neck.f4_proj.', feats[1])
    v5 = F.conv_transpose2d(feats[2], sd['neck.f5_proj.0.weight'])
    v5 = F.relu(_batch_norm(sd, 'neck.f5_proj.1.', v5, _CONV_BN_EPS))
    txt = _linear(sd, 'neck.txt_proj.', sentence)[:, None]  # B x 1 x C: a single key
    fused = []
    for level, v in zip((3, 4, 5), (v3, v4, v5)):
        b, c, h, w = v.shape
        seq = v.flatten(2).transpose(1, 2)
        # CrossAttn: query = the map, key = value = the one sentence token; the
        # map is multiplied (not added) by the attention output.
        att = _mha(sd, f'neck.fusion{level}.multihead_attn.', seq, txt, txt, arch.neck_heads)
        fused.append((seq * att).transpose(1, 2).reshape(b, c, h, w))
    fq = _conv_bn_relu(sd, 'neck.aggr.', torch.cat(fused, 1))
    b, _, h, w = fq.shape
    # CoordConv appends x (varying along the width) then y (along the height).
    ys = torch.linspace(-1, 1, h)[:, None].expand(h, w)
    xs = torch.linspace(-1, 1, w)[None, :].expand(h, w)
    coords = torch.stack([xs, ys])[None].expand(b, -1, -1, -1)
    fq1 = _conv_bn_relu(sd, 'neck.coordconv.0.conv1.', torch.cat([fq, coords], 1), padding=1)
    fq1 = _conv_bn_relu(sd, 'neck.coordconv.1.', fq1, padding=1)
    return fq1 + fq


def _sine_table(positions: Tensor, channels: int) -> Tensor:
    """len(positions) x channels: sin at even, cos at odd channels (Decoder.pos1d)."""
    freqs = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32)
                      * -(math.log(10000.0) / channels))
    angles = positions.float()[:, None] * freqs
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)


def _pos2d(channels: int, rows: int, cols: int) -> Tensor:
    """Decoder.pos2d as (rows * cols) x channels, row-major tokens.

    The first half of the channels encodes the column (x), the second half
    the row (y), each interleaved sin / cos with frequencies of a
    channels / 2 table.
    """
    half = channels // 2
    col = _sine_table(torch.arange(cols), half)[None].expand(rows, -1, -1)
    row = _sine_table(torch.arange(rows), half)[:, None].expand(-1, cols, -1)
    return torch.cat([col, row], -1).reshape(rows * cols, channels)


def _decoder(sd: Dict[str, Tensor], arch: DetrisArch, fq: Tensor, words: Tensor,
             pad: Tensor) -> Tensor:
    """layers.py Decoder: pre-norm layers with a norm after each attention."""
    b, c, h, w = fq.shape
    vis_pos = _pos2d(c, h, w)
    txt_pos = _sine_table(torch.arange(words.shape[1]), words.shape[2])
    pad_bias = torch.zeros(pad.shape).masked_fill(pad, float('-inf'))[:, None, None, :]
    x = fq.flatten(2).transpose(1, 2)
    for i in range(arch.dec_layers):
        p = f'decoder.layers.{i}.'
        h2 = _layer_norm(sd, p + 'norm1.', x, _DECODER_LN_EPS)
        q = h2 + vis_pos
        att = _mha(sd, p + 'self_attn.', q, q, h2, arch.dec_heads)
        x = x + _layer_norm(sd, p + 'self_attn_norm.', att, _DECODER_LN_EPS)
        h2 = _layer_norm(sd, p + 'norm2.', x, _DECODER_LN_EPS)
        att = _mha(sd, p + 'multihead_attn.', h2 + vis_pos, words + txt_pos, words,
                   arch.dec_heads, pad_bias)
        x = x + _layer_norm(sd, p + 'cross_attn_norm.', att, _DECODER_LN_EPS)
        h2 = _layer_norm(sd, p + 'norm3.', x, _DECODER_LN_EPS)
        h2 = F.relu(_linear(sd, p + 'ffn.0.', h2))
        h2 = _layer_norm(sd, p + 'ffn.3.', h2, _DECODER_LN_EPS)
        x = x + _linear(sd, p + 'ffn.4.', h2)
    x = _layer_norm(sd, 'decoder.norm.', x, _DECODER_LN_EPS)
    return x.transpose(1, 2).reshape(b, c, h, w)


def _projector(sd: Dict[str, Tensor], arch: DetrisArch, fq: Tensor,
               sentence: Tensor) -> Tensor:
    """layers.py Projector: upsample x4, then a per-sample kernel from the sentence."""
    x = F.interpolate(fq, scale_factor=2.0, mode='bilinear', align_corners=False)
    x = _conv_bn_relu(sd, 'proj.vis.1.', x, padding=1)
    x = F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=False)
    x = _conv_bn_relu(sd, 'proj.vis.3.', x, padding=1)
    x = F.conv2d(x, sd['proj.vis.4.weight'], sd['proj.vis.4.bias'])
    b, c, h, w = x.shape
    k = arch.proj_kernel
    dyn = _linear(sd, 'proj.txt.', sentence)
    weight, bias = dyn[:, :-1].reshape(b, c, k, k), dyn[:, -1]
    out = F.conv2d(x.reshape(1, b * c, h, w), weight, bias, padding=k // 2, groups=b)
    return out.transpose(0, 1)


@torch.no_grad()
def detris_forward(state_dict: Dict[str, Tensor], arch: DetrisArch, images: Tensor,
                   tokens: Tensor) -> Tensor:
    """``DETRIS.forward(img, word)`` in eval mode, from the state-dict tensors.

    The text tower runs first (its word features condition DINOv2's
    adapters), then DINOv2, Neck, Decoder and Projector.

    Args:
        state_dict: DETRIS's weights without the ``module.`` prefix.
        arch: The model's sizes.
        images: B x 3 x H x W normalised images, square, H a multiple of the
            patch size.
        tokens: B x word_len int64 CLIP ids (SOT ... EOT, zero padded).

    Returns:
        B x 1 x (4 H / 14) x (4 W / 14) float32 mask logits.
    """
    b, _, rows, cols = images.shape
    if rows != cols or rows % arch.patch_size:
        raise ValueError(f'DETRIS needs square inputs, sides multiples of '
                         f'{arch.patch_size}; got {rows} x {cols}')
    if tokens.shape != (b, arch.word_len):
        raise ValueError(f'tokens must be {b} x {arch.word_len}, got {tuple(tokens.shape)}')
    images = images.float()
    words, sentence = _text_tower(state_dict, arch, tokens)
    feats = _dino_tower(state_dict, arch, images, words)
    fq = _neck(state_dict, arch, feats, sentence)
    fq = _decoder(state_dict, arch, fq, words, tokens == 0)
    return _projector(state_dict, arch, fq, sentence)
