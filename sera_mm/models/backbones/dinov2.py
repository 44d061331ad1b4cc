"""DINOv2 with register tokens, on mmpretrain's VisionTransformer."""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.model import ModuleDict, ModuleList
from mmpretrain.models.backbones import VisionTransformer
from torch import Tensor, nn

from sera_mm.models.utils.structures import RoutingResult, TextFeatures
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import pretrained_file
from .dinov2_checkpoint import OFFICIAL_LAYOUT, read_dinov2_checkpoint
from .dinov2_layer import DINOv2Layer
from .pos_embed import POS_EMBED_MODES, resize_pos_embed

TRAINABLE_MODES = ('bitfit_ln', 'all', 'none')


@MODELS.register_module()
class DINOv2(VisionTransformer):
    """DINOv2 ViT/14 with register tokens, adapter slots and PET freezing.

    Token layout: ``[cls, registers, H*W patches]``. The position embedding
    covers cls + a 37 x 37 patch grid (``img_size=518``); it is added before
    the registers are inserted (registers have none) and resized to other
    grids on the fly (``pos_embed_mode``). LayerNorm eps 1e-6 and LayerScale
    in every block, as in DINOv2.

    Args:
        arch (str | dict): 'small' / 's', 'base' / 'b', 'large' / 'l',
            'giant' / 'g' (SwiGLU FFN), or a dict with ``embed_dims``,
            ``num_layers``, ``num_heads``, ``feedforward_channels`` and
            optionally ``ffn_type`` ('origin' MLP or 'swiglu_fused'), e.g. a
            2-layer model for tests. Defaults to 'base'. With 'swiglu_fused',
            mmpretrain's FFN has no drop path: ``drop_path_rate`` then only
            acts on the attention branch.
        img_size (int | tuple): Input size of the stored position embedding;
            518 holds the official 37 x 37 grid. Defaults to 518.
        patch_size (int): Defaults to 14.
        in_channels (int): Defaults to 3.
        num_register_tokens (int): 0 or 4 in the official models.
            Defaults to 4.
        out_indices (Sequence[int]): Blocks whose output is returned
            (negative counts from the end); the last block's after the final
            norm, the others raw. Defaults to (4, 8, 11), DETRIS's levels for
            ViT-B (ViT-L: (8, 16, 23)).
        pos_embed_mode (str): 'official' or 'detris', see
            :func:`resize_pos_embed`. Defaults to 'official'.
        drop_rate (float): Dropout after the position embedding and in the
            blocks. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linearly increasing over
            the blocks. Defaults to 0.
        layer_scale_init_value (float): LayerScale init. Defaults to 1e-5.
        norm_cfg (dict): Defaults to ``dict(type='LN', eps=1e-6)``.
        adapter_cfg (dict, optional): Config of the adapter built for each
            block in ``adapter_indices``; ``in_channels`` defaults to the
            backbone width D. None: no adapters. Defaults to None.
        adapter_indices (Sequence[int]): Blocks with an adapter.
            Defaults to (1, 3, 5, 7, 9, 11).
        adapter_scale (float): gamma, the adapter's weight next to the FFN.
            Defaults to 0.2.
        trainable (str): Which backbone parameters train: 'bitfit_ln' (biases
            and LayerNorm weights only), 'all' or 'none'. Adapters are not
            touched: they stay as built (trainable). Defaults to 'bitfit_ln'.
        init_cfg (dict | list[dict], optional): mmengine init config; a
            ``Pretrained`` entry (official or converted key layout, optional
            ``prefix`` such as ``'backbone.'``) is loaded by
            :meth:`init_weights`. Defaults to None.
    """
    arch_zoo = {
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': 384, 'num_layers': 12, 'num_heads': 6,
            'feedforward_channels': 1536}),
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': 768, 'num_layers': 12, 'num_heads': 12,
            'feedforward_channels': 3072}),
        **dict.fromkeys(['l', 'large'], {
            'embed_dims': 1024, 'num_layers': 24, 'num_heads': 16,
            'feedforward_channels': 4096}),
        # SwiGLU hidden width: mmpretrain's SwiGLUFFNFused turns 6144 into
        # 4096, as the official model does.
        **dict.fromkeys(['g', 'giant'], {
            'embed_dims': 1536, 'num_layers': 40, 'num_heads': 24,
            'feedforward_channels': 6144, 'ffn_type': 'swiglu_fused'}),
    }
    num_extra_tokens = 1  # tokens with a position embedding: cls only

    def __init__(self,
                 arch: Union[str, dict] = 'base',
                 img_size: Union[int, Tuple[int, int]] = 518,
                 patch_size: int = 14,
                 in_channels: int = 3,
                 num_register_tokens: int = 4,
                 out_indices: Sequence[int] = (4, 8, 11),
                 pos_embed_mode: str = 'official',
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-5,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 adapter_cfg: Optional[dict] = None,
                 adapter_indices: Sequence[int] = (1, 3, 5, 7, 9, 11),
                 adapter_scale: float = 0.2,
                 trainable: str = 'bitfit_ln',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        arch_settings = self._resolve_arch(arch)
        if trainable not in TRAINABLE_MODES:
            raise ValueError(f'trainable={trainable!r}; choose from {TRAINABLE_MODES}')
        if pos_embed_mode not in POS_EMBED_MODES:
            raise ValueError(f'DINOv2: pos_embed_mode={pos_embed_mode!r}; choose from '
                             f'{POS_EMBED_MODES}')
        # The parent builds everything but the blocks (num_layers=0): it
        # would build plain TransformerEncoderLayers, we need DINOv2Layer.
        super().__init__(
            arch={**arch_settings, 'num_layers': 0},
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=[],
            drop_rate=drop_rate,
            qkv_bias=True,
            norm_cfg=norm_cfg,
            final_norm=True,
            out_type='featmap',
            with_cls_token=True,
            layer_scale_init_value=layer_scale_init_value,
            init_cfg=init_cfg)
        self.arch_settings = arch_settings
        self.num_layers = arch_settings['num_layers']
        self.patch_size = patch_size
        self.pos_embed_mode = pos_embed_mode
        self.out_indices = self._resolve_indices(out_indices, 'out_indices')

        dpr = np.linspace(0, drop_path_rate, self.num_layers)
        self.layers = ModuleList(
            DINOv2Layer(
                embed_dims=self.embed_dims,
                num_heads=arch_settings['num_heads'],
                feedforward_channels=arch_settings['feedforward_channels'],
                layer_scale_init_value=layer_scale_init_value,
                drop_rate=drop_rate,
                drop_path_rate=float(dpr[i]),
                qkv_bias=True,
                ffn_type=arch_settings.get('ffn_type', 'origin'),
                norm_cfg=norm_cfg) for i in range(self.num_layers))

        if num_register_tokens < 0:
            raise ValueError(f'num_register_tokens={num_register_tokens} must be >= 0')
        self.num_register_tokens = num_register_tokens
        self.num_prefix_tokens = 1 + num_register_tokens
        if num_register_tokens > 0:
            self.register_tokens = nn.Parameter(
                torch.zeros(1, num_register_tokens, self.embed_dims))
        else:
            self.register_parameter('register_tokens', None)

        self.adapter_scale = adapter_scale
        # mmengine's ModuleDict: init_weights reaches each adapter's own
        self.adapters = ModuleDict()
        if adapter_cfg is not None:
            for index in self._resolve_indices(adapter_indices, 'adapter_indices'):
                cfg = dict(adapter_cfg)
                cfg.setdefault('in_channels', self.embed_dims)
                self.adapters[str(index)] = MODELS.build(cfg)

        self.trainable = trainable
        self._apply_trainable()

    @classmethod
    def _resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """Returns the arch settings dict of a name or a custom dict."""
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ValueError(f'DINOv2 arch {arch!r} is not one of '
                                 f'{sorted(cls.arch_zoo)}')
            return dict(cls.arch_zoo[arch.lower()])
        essential = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
        if not isinstance(arch, dict) or not essential <= set(arch):
            raise ValueError(f'custom DINOv2 arch must be a dict with keys '
                             f'{sorted(essential)}, got {arch!r}')
        if arch.get('ffn_type', 'origin') not in ('origin', 'swiglu_fused'):
            raise ValueError(f"arch ffn_type={arch['ffn_type']!r}; choose 'origin' "
                             "or 'swiglu_fused'")
        return dict(arch)

    def _resolve_indices(self, indices: Sequence[int], name: str) -> List[int]:
        """Turns negative block indices positive; checks the range."""
        if isinstance(indices, int):
            indices = [indices]
        resolved = []
        for index in indices:
            positive = index + self.num_layers if index < 0 else index
            if not 0 <= positive < self.num_layers:
                raise ValueError(f'{name} holds {index}, outside the '
                                 f'{self.num_layers} blocks of this arch')
            resolved.append(positive)
        return resolved

    def _apply_trainable(self) -> None:
        """Sets ``requires_grad`` of the backbone's own parameters (not the
        adapters'); called by ``__init__``, :meth:`init_weights` and
        :meth:`train`, so that nothing turns a frozen parameter back on."""
        layer_norm_params = {
            id(p)
            for name, m in self.named_modules()
            if isinstance(m, nn.LayerNorm) and not name.startswith('adapters.')
            for p in m.parameters()
        }
        for name, param in self.named_parameters():
            if name.startswith('adapters.'):
                continue
            if self.trainable == 'all':
                flag = True
            elif self.trainable == 'none':
                flag = False
            else:
                flag = name.endswith('.bias') or id(param) in layer_norm_params
            param.requires_grad_(flag)

    def train(self, mode: bool = True) -> 'DINOv2':
        """Sets the train/eval mode, then re-applies ``trainable``."""
        super().train(mode)
        self._apply_trainable()
        return self

    def init_weights(self) -> None:
        """Initialises the weights; reached from the segmentor's.

        mmengine's order: the other ``init_cfg`` entries, then each child's
        ``init_weights`` (the blocks', each adapter's); a ``Pretrained``
        checkpoint is loaded last (:meth:`load_pretrained`), then
        ``trainable`` is applied.
        """
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        pretrained = [c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained']
        if not pretrained:
            super().init_weights()
            if self.register_tokens is not None:
                nn.init.normal_(self.register_tokens, std=1e-6)
        else:
            init_cfg = self.init_cfg
            others = [c for c in cfgs if c not in pretrained and c is not None]
            self.init_cfg = others or None
            try:
                super().init_weights()
            finally:
                self.init_cfg = init_cfg
            self.load_pretrained(pretrained[-1]['checkpoint'], pretrained[-1].get('prefix'))
        self._apply_trainable()

    def load_pretrained(self, path: str, prefix: Optional[str] = None) -> None:
        """Loads a DINOv2 checkpoint, official or converted layout, and logs it.

        Missing adapter keys are allowed (adapters keep their init); any
        other missing or unexpected key raises.

        Args:
            path (str): Local checkpoint file.
            prefix (str, optional): Only keys under this prefix, stripped.
        """
        state_dict, layout, dropped = read_dinov2_checkpoint(
            pretrained_file(path, 'DINOv2 init_cfg.checkpoint'), prefix)
        own_keys = set(self.state_dict())
        missing = sorted(own_keys - set(state_dict))
        adapter_missing = [k for k in missing if k.startswith('adapters.')]
        missing = [k for k in missing if not k.startswith('adapters.')]
        unexpected = sorted(set(state_dict) - own_keys)
        if missing or unexpected:
            raise KeyError(f'{path} ({layout} layout) does not fit DINOv2('
                           f'embed_dims={self.embed_dims}, num_layers='
                           f'{self.num_layers}, num_register_tokens='
                           f'{self.num_register_tokens}): missing keys '
                           f'{missing}, unexpected keys {unexpected}')
        src_tokens = state_dict['pos_embed'].shape[1]
        self.load_state_dict(state_dict, strict=False)  # only adapters may be absent
        grid = 'x'.join(map(str, self.patch_resolution))
        if src_tokens == self.pos_embed.shape[1]:
            pos_note = f'pos_embed used as stored ({grid} grid)'
        else:
            pos_note = f'pos_embed resized to the {grid} grid'
        converted = ', converted' if layout == OFFICIAL_LAYOUT else ''
        print_log(
            f'DINOv2: loaded {len(state_dict)} tensors from {path} ({layout} '
            f'layout{converted}); {pos_note}; dropped {dropped or "nothing"}; '
            f'{len(adapter_missing)} adapter tensors keep their init',
            logger='current')

    def _prepare_pos_embed(self, state_dict: Dict[str, Tensor], prefix: str,
                           *args, **kwargs) -> None:
        """Load-state-dict pre-hook: resizes a checkpoint's pos_embed.

        Replaces mmpretrain's hook (no antialias) with :func:`resize_pos_embed`
        in ``pos_embed_mode``; the checkpoint's grid is taken as square.
        """
        name = prefix + 'pos_embed'
        if name not in state_dict or state_dict[name].shape == self.pos_embed.shape:
            return
        stored = state_dict[name]
        side = math.isqrt(stored.shape[1] - self.num_extra_tokens)
        if side * side != stored.shape[1] - self.num_extra_tokens:
            raise ValueError(f'{name} of shape {tuple(stored.shape)}: not cls + '
                             'a square grid, cannot resize it')
        state_dict[name] = resize_pos_embed(
            stored, (side, side), self.patch_resolution, self.num_extra_tokens,
            self.pos_embed_mode)
        print_log(f'DINOv2: {name} resized from a {side}x{side} to a '
                  f'{self.patch_resolution[0]}x{self.patch_resolution[1]} grid '
                  f'({self.pos_embed_mode} mode)', logger='current')

    def forward(self, x: Tensor, text: Optional[TextFeatures] = None
                ) -> Tuple[Tuple[Tensor, ...], Dict[str, RoutingResult]]:
        """Encodes images; called by the segmentor.

        Args:
            x (Tensor): Images, B x C x H x W, H and W multiples of the patch
                size (14), as the official DINOv2 requires.
            text (TextFeatures, optional): Handed to the adapters.

        Returns:
            tuple: The levels, one B x D x H/14 x W/14 patch map per
            ``out_indices`` entry, in that order: the block's raw output
            (timm's ``get_intermediate_layers(norm=False)``), the last
            block's after the final LayerNorm; and the routing result of each
            adapter that routes (SERA-Adapter), by block index (``'1'``).
        """
        self._check_input(x)
        batch = x.shape[0]
        tokens, hw = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        tokens = tokens + resize_pos_embed(
            self.pos_embed, self.patch_resolution, hw, self.num_extra_tokens,
            self.pos_embed_mode)
        tokens = self.drop_after_pos(tokens)
        if self.register_tokens is not None:
            tokens = torch.cat([tokens[:, :1],
                                self.register_tokens.expand(batch, -1, -1),
                                tokens[:, 1:]], dim=1)

        maps: Dict[int, Tensor] = {}
        routings: Dict[str, RoutingResult] = {}
        for i, layer in enumerate(self.layers):
            adapter = self.adapters[str(i)] if str(i) in self.adapters else None
            tokens, routing = layer(tokens, adapter=adapter, text=text, hw=hw,
                                    num_prefix_tokens=self.num_prefix_tokens,
                                    adapter_scale=self.adapter_scale)
            if routing is not None:
                routings[str(i)] = routing
            if i == self.num_layers - 1:
                tokens = self.ln1(tokens)
            if i in self.out_indices:
                maps[i] = self._to_map(tokens, hw)
        return tuple(maps[i] for i in self.out_indices), routings

    def _check_input(self, x: Tensor) -> None:
        """Raises on a wrong image tensor, naming its shape."""
        in_channels = self.patch_embed.projection.in_channels
        if x.dim() != 4 or x.shape[1] != in_channels:
            raise ValueError(f'DINOv2 expects images B x {in_channels} x H x W, '
                             f'got shape {tuple(x.shape)}')
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f'DINOv2: image shape {tuple(x.shape)} has a side that is not a '
                f'multiple of the patch size {self.patch_size}; resize or pad '
                'to multiples of it (the official DINOv2 refuses such inputs too)')

    def _to_map(self, tokens: Tensor, hw: Tuple[int, int]) -> Tensor:
        """B x N x D tokens -> B x D x H x W patch map (prefix stripped)."""
        patches = tokens[:, self.num_prefix_tokens:]
        return patches.reshape(tokens.shape[0], *hw, -1).permute(0, 3, 1, 2).contiguous()
