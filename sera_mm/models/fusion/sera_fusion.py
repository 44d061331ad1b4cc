"""SERA-Fusion: four residual experts mixed per sample by a noisy Top-k router."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from sera_mm.registry import MODELS
from ..routers import dense_dispatch, sparse_dispatch
from ..utils import RoutingResult
from .local_batch_norm import LocalBatchNorm2d

# Short names accepted in ``experts``; the boundary and shape experts take phi.
EXPERT_TYPES: Dict[str, str] = dict(
    spatial='SpatialExpert', context='ContextExpert',
    boundary='BoundaryExpert', shape='ShapeExpert')
_EXPERTS_WITH_PHI = ('boundary', 'shape')


@MODELS.register_module()
class SERAFusion(BaseModule):
    """Routes each sample of a B x C x H x W level to k of E experts (docs/en/method.md, s. 3).

    ``F_out = sum over kept e of w_e * E_e(F)``, computed by
    :func:`~sera_mm.models.routers.sparse_dispatch` (an expert runs only on
    the sub-batch that selected it; DDP needs no ``find_unused_parameters``).
    A router without indices (e.g. ``SoftRouter``) mixes densely.

    phi defaults to BatchNorm, as in the paper; in training an expert's
    BatchNorm normalises with the statistics of its own sub-batch, so the
    output equals the dense formula on the whole batch only in eval (or
    with a per-sample norm such as ``dict(type='GN', num_groups=32)``). A
    sub-batch of one sample works while H*W > 1. That BatchNorm is
    :class:`LocalBatchNorm2d`, which SyncBN conversion leaves per rank; in
    distributed training this module refuses a SyncBatchNorm in an expert
    (it would wait for ranks that did not pick the expert).

    Args:
        channels (int): Width C of the level.
        experts (Sequence[str | dict]): Experts in router order. A string is
            one of 'spatial', 'context', 'boundary', 'shape'; a dict is a
            full MODELS config (``channels`` is filled in). Defaults to all
            four, in that order.
        router (dict): Router config; ``in_channels`` and ``num_experts``
            are filled in. Defaults to ``dict(type='NoisyTopKRouter',
            top_k=2)``.
        expert_cfgs (dict, optional): Extra arguments per short name, e.g.
            ``dict(context=dict(num_heads=8, ffn_ratio=4.0))``.
        norm_cfg (dict): Norm of phi in the boundary and shape experts; any
            mmcv norm config. Defaults to ``dict(type='LocalBN')``.
        act_cfg (dict): Activation of phi. Defaults to ``dict(type='ReLU')``.
        zero_init_experts (bool): Start every expert's residual branch at
            zero (each expert's ``zero_init_residual``, applied by
            :meth:`init_weights`), so that the module starts as the
            identity; the boundary and shape experts get a residual scale
            for it (zeroing phi = BN + ReLU would stop its gradient). The
            paper leaves the initialisation open; the SERA configs turn it
            on (docs/en/experiments.md). Defaults to False.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 channels: int,
                 experts: Sequence[Union[str, dict]] = ('spatial', 'context', 'boundary', 'shape'),
                 router: dict = dict(type='NoisyTopKRouter', top_k=2),
                 expert_cfgs: Optional[Dict[str, dict]] = None,
                 norm_cfg: dict = dict(type='LocalBN'),
                 act_cfg: dict = dict(type='ReLU'),
                 zero_init_experts: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if len(experts) == 0:
            raise ValueError('SERAFusion: `experts` is empty')
        expert_cfgs = expert_cfgs or {}
        if norm_cfg is not None and norm_cfg.get('type') == 'LocalBN':
            # the class itself: found whatever the default scope of the build
            norm_cfg = dict(norm_cfg, type=LocalBatchNorm2d)
        unknown = set(expert_cfgs) - set(EXPERT_TYPES)
        if unknown:
            raise ValueError(f'SERAFusion: expert_cfgs has unknown names {sorted(unknown)}; '
                             f'known: {sorted(EXPERT_TYPES)}')
        self.channels = channels
        self.expert_names = []
        modules = []
        for expert in experts:
            if isinstance(expert, str):
                if expert not in EXPERT_TYPES:
                    raise ValueError(f'SERAFusion: unknown expert {expert!r} in `experts`; '
                                     f'known: {sorted(EXPERT_TYPES)}')
                cfg = dict(type=EXPERT_TYPES[expert], channels=channels)
                if expert in _EXPERTS_WITH_PHI:
                    cfg.update(norm_cfg=norm_cfg, act_cfg=act_cfg)
                    if zero_init_experts:
                        cfg.update(residual_scale=0.)
                cfg.update(expert_cfgs.get(expert, {}))
                self.expert_names.append(expert)
            else:
                cfg = dict(expert)
                cfg.setdefault('channels', channels)
                self.expert_names.append(str(cfg.get('type')))
            modules.append(MODELS.build(cfg))
        # mmengine's ModuleList so that init_weights reaches the experts.
        self.experts = ModuleList(modules)
        self.zero_init_experts = zero_init_experts
        if zero_init_experts:
            for name, module in zip(self.expert_names, modules):
                if not hasattr(module, 'zero_init_residual'):
                    raise ValueError(f'SERAFusion: zero_init_experts=True but expert {name!r} '
                                     'has no zero_init_residual() method')

        router = dict(router)
        router.setdefault('in_channels', channels)
        if router.setdefault('num_experts', len(modules)) != len(modules):
            raise ValueError(f'SERAFusion: router.num_experts={router["num_experts"]} but '
                             f'{len(modules)} experts are configured')
        self.router = MODELS.build(router)

    def init_weights(self) -> None:
        """Initialises the router and the experts, then, with
        ``zero_init_experts``, zeroes each expert's residual branch, last so
        that no ``init_cfg`` overwrites it; reached from the neck's."""
        super().init_weights()
        if self.zero_init_experts:
            for expert in self.experts:
                expert.zero_init_residual()

    def _refuse_synced_norms(self) -> None:
        """Raises if an expert holds a SyncBatchNorm (torch's or mmcv's);
        called by :meth:`forward` in distributed training."""
        synced = [f'experts.{name}' for name, m in self.experts.named_modules()
                  if 'SyncBatchNorm' in type(m).__name__]
        if synced:
            raise RuntimeError(
                f'SERAFusion: {synced} are SyncBatchNorm; an expert runs only on the '
                'samples that picked it, so a synchronised norm would wait for ranks '
                "that did not pick it. Build the experts' norm as norm_cfg="
                "dict(type='LocalBN') (the default, which SyncBN conversion keeps) "
                'or a per-sample norm (GN)')

    def forward(self, x: Tensor) -> Tuple[Tensor, RoutingResult]:
        """Mixes the experts on one level; called once per level per batch.

        Args:
            x (Tensor): B x C x H x W.

        Returns:
            tuple: the mixed map (B x C x H x W) and the router's
            :class:`RoutingResult` (for the MoE loss and statistics).
        """
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f'SERAFusion: expected B x {self.channels} x H x W, '
                             f'got {tuple(x.shape)}')
        if self.training and dist.is_available() and dist.is_initialized() \
                and dist.get_world_size() > 1:
            self._refuse_synced_norms()
        routing = self.router(x)
        # An exported graph cannot hold the sparse dispatch's data-dependent
        # sub-batches: it gets the dense form, equal in eval (test_routers.py).
        if routing.indices is None or torch.onnx.is_in_onnx_export():
            out = dense_dispatch(x, self.experts, routing.weights)
        else:
            out = sparse_dispatch(x, self.experts, routing.weights, routing.indices)
        return out, routing
