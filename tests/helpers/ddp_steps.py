"""Training steps of a toy SERA with forced Top-k selections, in one process
or as one rank of a gloo DDP run (find_unused_parameters=False); the worker
of tests/test_engine/test_runner/test_ddp_static_graph.py, importable by
the processes torch.multiprocessing spawns.

The global batch holds 4 samples; with 2 ranks, rank r trains on samples
2r and 2r + 1. ``SELECTIONS`` gives, per step and per SERA-Fusion level, the
2 experts (of 4) each sample keeps, chosen so that in every step each rank
leaves some expert unpicked (often not the same one as the other rank).
"""
import os
import traceback
from datetime import timedelta
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from torch import Tensor, nn

from .forced_routing import forced_selection
from .small_models import make_batch, small_model_cfg

CONFIG = 'configs/synthetic/sera-tiny_synthetic.py'
GLOBAL_BATCH = 4
WORLD_SIZE = 2
#: Per step: the experts each of the 4 samples keeps, at level 0 (level l
#: uses (e + l) % 4). Level 0, rank 0 (samples 0, 1) / rank 1 (2, 3) pick:
#: {0, 1} / {1, 2}; {0, 3} / {0, 1}; {2, 3} / {2, 3}.
_LEVEL0 = [
    [[0, 1], [1, 0], [2, 1], [1, 2]],
    [[3, 0], [0, 3], [0, 1], [1, 0]],
    [[2, 3], [3, 2], [2, 3], [3, 2]],
]
SELECTIONS = [[[[(e + level) % 4 for e in row] for row in step] for level in range(3)]
              for step in _LEVEL0]
#: Scenarios a worker runs (see :func:`build_model`).
SCENARIOS = ('compare', 'train', 'no_touch')


def build_model(scenario: str) -> nn.Module:
    """The toy SERA (the tiny config, shrunk) for a scenario, seed 0.

    'compare' computes, per sample, the same function whether the global
    batch is split over ranks or not, so that DDP must equal one process:
    the experts' norm is GroupNorm (per sample; their BatchNorm would
    normalise each rank's sub-batch), every other BatchNorm runs in eval
    mode (see :func:`train_steps`; SyncBN would pool the ranks' statistics
    instead, but torch's SyncBatchNorm runs on GPUs only), the MoE loss
    keeps its z-loss only (importance and load are CV^2 of sums over the
    batch: per rank under DDP), the router has no noise and dropout is off
    (both random, drawn per rank). 'train' and 'no_touch': the config's
    model as it trains (BatchNorm on each rank's batch, the experts' on
    their sub-batch, the full MoE loss, noise, dropout).
    """
    cfg = small_model_cfg(CONFIG)
    if scenario == 'compare':
        cfg.neck.fusion_cfg.norm_cfg = dict(type='GN', num_groups=8)
        cfg.neck.fusion_cfg.router.noise_std = 0.
        cfg.moe_loss.update(lambda_importance=0., lambda_load=0.)
    from sera_mm.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    if scenario == 'compare':
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.
            elif isinstance(module, nn.MultiheadAttention):
                module.dropout = 0.
    return model


def global_data() -> dict:
    """The global batch as a loader gives it (images in 0..255)."""
    inputs, samples = make_batch(small_model_cfg(CONFIG), GLOBAL_BATCH)
    return dict(inputs=list((inputs * 60 + 120).clamp(0, 255)), data_samples=samples)


def shard(data: dict, rank: int, world_size: int) -> dict:
    per_rank = GLOBAL_BATCH // world_size
    part = slice(rank * per_rank, (rank + 1) * per_rank)
    return dict(inputs=data['inputs'][part], data_samples=data['data_samples'][part])


def train_steps(model: nn.Module, scenario: str, rank: int = 0, world_size: int = 1,
                selections: Optional[list] = None) -> List[Dict[str, Tensor]]:
    """Runs one training step (``model.train_step``, SGD with momentum) per
    entry of ``selections`` (default :data:`SELECTIONS`) on this rank's part
    of the global batch, each with its forced selection; ``model`` is the
    toy SERA or its DDP wrapper.

    Returns:
        list[dict]: The trainable parameters after each step.
    """
    inner = getattr(model, 'module', model)
    params = [p for p in inner.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.SGD(params, lr=0.05, momentum=0.9))
    data = shard(global_data(), rank, world_size)
    per_rank = GLOBAL_BATCH // world_size
    snapshots = []
    for step in SELECTIONS if selections is None else selections:
        inner.train()
        if scenario == 'compare':
            for module in inner.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        selection = [torch.tensor(level[rank * per_rank:(rank + 1) * per_rank])
                     for level in step]
        with forced_selection(inner, selection):
            model.train_step(data, wrapper)
        snapshots.append({n: p.detach().clone() for n, p in inner.named_parameters()
                          if p.requires_grad})
    return snapshots


def worker(rank: int, port: int, out_dir: str) -> None:
    """One rank: every scenario of :data:`SCENARIOS` under
    ``MMDistributedDataParallel(find_unused_parameters=False)``; saves
    ``{scenario}_rank{rank}.pt`` (the snapshots, or the error text)."""
    import sera_mm
    from mmengine.model import MMDistributedDataParallel
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=WORLD_SIZE, timeout=timedelta(seconds=120))
    sera_mm.register_all_modules(init_default_scope=False)
    try:
        with DefaultScope.overwrite_default_scope('sera_mm'):
            for scenario in SCENARIOS:
                result: Optional[object] = None
                try:
                    model = build_model(scenario)
                    ddp = MMDistributedDataParallel(module=model, device_ids=None,
                                                    broadcast_buffers=False,
                                                    find_unused_parameters=False)
                    if scenario == 'no_touch':
                        from unittest import mock
                        # both ranks leave experts 0 and 1 of level 0 unpicked
                        # (the same buckets wait on both, nothing hangs)
                        with mock.patch('sera_mm.models.routers.zero_touch',
                                        lambda modules: None):
                            result = train_steps(ddp, scenario, rank, WORLD_SIZE,
                                                 selections=SELECTIONS[2:] * 2)
                    else:
                        result = train_steps(ddp, scenario, rank, WORLD_SIZE)
                except Exception:  # noqa: B902  (reported to the test)
                    result = traceback.format_exc()
                torch.save(result, os.path.join(out_dir, f'{scenario}_rank{rank}.pt'))
                dist.barrier()
    finally:
        dist.destroy_process_group()
