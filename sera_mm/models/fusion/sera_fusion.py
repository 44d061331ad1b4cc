"""SERA-Fusion: four residual experts mixed per sample by a noisy Top-k router."""
from typing import Dict, Optional, Sequence, Tuple, Union

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

    ``F_out = sum over kept e of w_e * E_e(F)``, computed by sparse dispatch:
    an expert runs only on the sub-batch that selected it. A router without
    indices (e.g. ``SoftRouter``) falls back to the dense mixture.

    BatchNorm and sparse dispatch: phi defaults to BatchNorm as in the paper.
    In training, an expert's BatchNorm then normalises with the statistics of
    its own sub-batch, so the output is not the dense formula evaluated on
    the whole batch (that needs a per-sample norm such as
    ``norm_cfg=dict(type='GN', num_groups=32)``); in eval both agree. A
    sub-batch of one sample still works while H*W > 1 (statistics are taken
    over the pixels; 32 x 32 in SERA) and fails at H*W = 1.

    Distributed training: the experts' BatchNorm stays per rank, on the
    rank's sub-batch. It is :class:`LocalBatchNorm2d` ('LocalBN', the
    default ``norm_cfg``; BatchNorm2d's computation and state-dict keys),
    which SyncBN conversion (the Runner's ``sync_bn='torch'``) does not
    touch, while the rest of the model's BatchNorms become SyncBN. A
    SyncBatchNorm in an expert would wait for ranks that did not pick the
    expert (a hang) or pool different sub-batches: in distributed training
    this module refuses to run with one. DDP needs no search for unused
    parameters: the experts no sample of a rank picked get zero gradients
    (see :func:`~sera_mm.models.routers.sparse_dispatch`), so
    ``find_unused_parameters=False`` is safe.

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
        norm_cfg (dict): Norm of phi in the boundary and shape experts.
            Defaults to ``dict(type='LocalBN')``: BatchNorm, per rank (see
            above); any mmcv norm config is accepted.
        act_cfg (dict): Activation of phi. Defaults to ``dict(type='ReLU')``.
        zero_init_experts (bool): Start every expert's residual branch at
            zero, so that the module starts as the identity (as the
            adapters' up-projection does): the spatial expert's projection
            and the context expert's attention output and last FFN layer are
            zeroed; the boundary and shape experts get a per-channel
            residual scale starting at 0 (zeroing phi = BN + ReLU would stop
            its gradient). :meth:`init_weights` sets these zeros; before it
            runs only the scales are at 0. The paper leaves the
            initialisation open. Off in the module (each layer keeps its own
            initialisation, the literal formula); the SERA configs turn it
            on (see docs/en/experiments.md). Defaults to False.
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
        """Initialises the router and the experts (each by its own
        ``init_weights``, after any ``init_cfg``), then, with
        ``zero_init_experts``, zeroes each expert's residual branch.

        Reached from the neck's ``init_weights`` (the neck keeps its fusion
        modules in mmengine's ``ModuleList``); the zeros are set last, so
        that no ``init_cfg`` overwrites them.
        """
        super().init_weights()
        if self.zero_init_experts:
            for expert in self.experts:
                expert.zero_init_residual()

    def _refuse_synced_norms(self) -> None:
        """Raises if an expert holds a SyncBatchNorm (torch's or mmcv's):
        under sparse dispatch it would wait for ranks that did not pick the
        expert. Called by :meth:`forward` in distributed training."""
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
        if routing.indices is None:
            out = dense_dispatch(x, self.experts, routing.weights)
        else:
            out = sparse_dispatch(x, self.experts, routing.weights, routing.indices)
        return out, routing
