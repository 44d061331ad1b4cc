"""DETRIS's neck: project, gate by the sentence, merge; SERA-Fusion on the levels."""
import copy
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS
from .coord_conv import CoordConv
from .sentence_gate import AttentionSentenceGate, SentenceGate

GATES = ('detris', 'folded')
FUSION_POSITIONS = ('before_proj', 'after_proj')


@MODELS.register_module()
class TextGatedNeck(BaseModule):
    """Merges the backbone levels into one sentence-gated map (docs/en/method.md, s. 5).

    Per level: a 1x1 conv + BN + ReLU from D to C, then the sentence gate.
    The gated levels are concatenated and merged by a 1x1 conv to C; a
    CoordConv and a 3x3 conv refine the result, which is added back.

    SERA-Fusion (``fusion_cfg``) runs on each level, one module per level:
    by default on the backbone's map at width D, before the projection
    (where tokens become grids in DETRIS); with
    ``fusion_position='after_proj'`` on the projected map at width C.

    All levels must share one spatial size (a plain ViT gives one grid).

    Args:
        in_channels (Sequence[int]): Channels D of each input level.
        channels (int): Width C of the neck. Defaults to 512.
        text_channels (int): Width of the sentence feature. Defaults to 512.
        gate (str): 'detris': DETRIS's gate, a shared ``txt_proj``
            Linear(text_channels, C) and a one-key attention per level
            (:class:`AttentionSentenceGate`); 'folded': the same function as
            one Linear per level (:class:`SentenceGate`; fewer parameters,
            another parameterisation in training). Defaults to 'detris'.
        num_heads (int): Heads of the DETRIS gate's attention. Defaults to 8.
        fusion_cfg (dict, optional): Config of the per-level fusion module
            (``channels`` defaults to the level's width), whose forward maps
            B x C' x H x W to ``(B x C' x H x W, RoutingResult)``, e.g.
            ``dict(type='SERAFusion')``. None: no fusion. Defaults to None.
        fusion_position (str): 'before_proj' (width D) or 'after_proj'
            (width C). Defaults to 'before_proj'.
        norm_cfg (dict): Norm layer of the convs. Defaults to BN.
        act_cfg (dict): Activation of the convs. Defaults to ReLU.
        init_cfg (dict or list[dict], optional): Initialisation config.

    Example:
        >>> import torch
        >>> from mmengine.registry import DefaultScope
        >>> from sera_mm.models.utils import TextFeatures
        >>> from sera_mm.registry import MODELS
        >>> with DefaultScope.overwrite_default_scope('sera_mm'):
        ...     neck = MODELS.build(dict(
        ...         type='TextGatedNeck', in_channels=[32, 32], channels=16,
        ...         text_channels=24, num_heads=2,
        ...         fusion_cfg=dict(type='SERAFusion', router=dict(
        ...             type='NoisyTopKRouter', top_k=2))))
        >>> text = TextFeatures(words=None, sentence=torch.randn(2, 24), pad_mask=None)
        >>> out, routings = neck([torch.randn(2, 32, 6, 6)] * 2, text)
        >>> tuple(out.shape), len(routings)
        ((2, 16, 6, 6), 2)
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 channels: int = 512,
                 text_channels: int = 512,
                 gate: str = 'detris',
                 num_heads: int = 8,
                 fusion_cfg: Optional[dict] = None,
                 fusion_position: str = 'before_proj',
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) == 0:
            raise ValueError('TextGatedNeck: in_channels must name at least one level')
        if gate not in GATES:
            raise ValueError(f'TextGatedNeck: gate={gate!r}; choose from {GATES}')
        if fusion_position not in FUSION_POSITIONS:
            raise ValueError(f'TextGatedNeck: fusion_position={fusion_position!r}; '
                             f'choose from {FUSION_POSITIONS}')
        self.in_channels = list(in_channels)
        self.channels = channels
        self.gate = gate
        self.fusion_position = fusion_position
        num_levels = len(self.in_channels)

        self.projs = ModuleList(
            ConvModule(d, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for d in self.in_channels)
        self.fusions: Optional[ModuleList] = None
        if fusion_cfg is not None:
            widths = self.in_channels if fusion_position == 'before_proj' \
                else [channels] * num_levels
            self.fusions = ModuleList(
                MODELS.build({'channels': width, **copy.deepcopy(fusion_cfg)})
                for width in widths)
        if gate == 'detris':
            self.txt_proj = nn.Linear(text_channels, channels)
            self.gates = ModuleList(
                AttentionSentenceGate(channels, num_heads) for _ in range(num_levels))
        else:
            self.txt_proj = None
            self.gates = ModuleList(
                SentenceGate(channels, text_channels) for _ in range(num_levels))
        self.aggregate = ConvModule(
            num_levels * channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.refine = nn.Sequential(
            CoordConv(channels, channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg),
            ConvModule(channels, channels, 3, padding=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg))

    @property
    def with_fusion(self) -> bool:
        """bool: Whether a fusion module (with a router) runs on each level."""
        return self.fusions is not None

    def forward(self, feats: Sequence[Tensor],
                text: TextFeatures) -> Tuple[Tensor, List[RoutingResult]]:
        """Called by the segmentor after the backbone.

        Args:
            feats (Sequence[Tensor]): One B x D_i x H x W map per level.
            text (TextFeatures): Only ``text.sentence`` (B x C_s) is read.

        Returns:
            tuple: The neck output, B x C x H x W, and the routing results
            of the fusion modules in level order (empty without fusion).
        """
        if len(feats) != len(self.in_channels):
            raise ValueError(f'TextGatedNeck: got {len(feats)} levels, in_channels '
                             f'names {len(self.in_channels)}')
        size = feats[0].shape[-2:]
        assert all(f.shape[-2:] == size for f in feats), \
            f'TextGatedNeck: levels differ in size: {[tuple(f.shape) for f in feats]}'

        gate_input = text.sentence if self.txt_proj is None else self.txt_proj(text.sentence)
        routings: List[RoutingResult] = []
        gated = []
        for i, x in enumerate(feats):
            if self.fusions is not None and self.fusion_position == 'before_proj':
                x, routing = self.fusions[i](x)
                routings.append(routing)
            x = self.projs[i](x)
            if self.fusions is not None and self.fusion_position == 'after_proj':
                x, routing = self.fusions[i](x)
                routings.append(routing)
            gated.append(self.gates[i](x, gate_input))
        x = self.aggregate(torch.cat(gated, dim=1))
        return x + self.refine(x), routings
