"""Micro-benchmark: SERA-Fusion's cost grows with top_k (not a test).

Run::

    OMP_NUM_THREADS=1 python -m sera_mm.models.fusion.benchmark \
        --channels 128 --size 16 --batch 8

The experts of one SERAFusion are mixed by :func:`sparse_dispatch` under a
balanced routing (sample b takes experts b, b+1, ..., b+k-1 mod E, so every
expert serves B*k/E samples: a freshly initialised router may send every
sample to the same, cheap or expensive, expert). For each k it prints the
floating-point operations counted by ``torch.utils.flop_counter``
(deterministic), the expert-sample evaluations and the median wall time in
eval mode; the dense mixture (every expert on every sample) is the
reference that sparse dispatch avoids.
"""
import argparse
from typing import Callable, Dict, List, Sequence

import torch
from torch import Tensor
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from sera_mm.models.routers import dense_dispatch, sparse_dispatch
from sera_mm.registry import MODELS


def balanced_routing(batch: int, num_experts: int, top_k: int):
    """Returns (weights B x E, indices B x k): sample b takes experts
    (b + j) mod E for j < k, with equal weights 1/k."""
    indices = (torch.arange(batch).view(-1, 1) + torch.arange(top_k).view(1, -1)) % num_experts
    weights = torch.zeros(batch, num_experts).scatter(1, indices, 1. / top_k)
    return weights, indices


def _measure(fn: Callable[[], Tensor], min_run_time: float) -> Dict[str, float]:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    ms = benchmark.Timer(stmt='fn()', globals=dict(fn=fn)).blocked_autorange(
        min_run_time=min_run_time).median * 1e3
    return dict(gflops=counter.get_total_flops() / 1e9, ms=ms)


def benchmark_top_k(channels: int = 128, size: int = 16, batch: int = 8,
                    top_ks: Sequence[int] = (1, 2, 3, 4), min_run_time: float = 1.0,
                    seed: int = 0) -> List[Dict[str, float]]:
    """Measures sparse dispatch per k, and the dense mixture (k = 'dense').

    Must run where 'SERAFusion' resolves (default scope 'sera_mm').

    Returns:
        list[dict]: per row 'top_k', 'gflops', 'expert_calls' and 'ms'.
    """
    torch.manual_seed(seed)
    fusion = MODELS.build(dict(type='SERAFusion', channels=channels)).eval()
    experts, num_experts = fusion.experts, len(fusion.experts)
    x = torch.randn(batch, channels, size, size)
    rows = []
    with torch.no_grad():
        for k in top_ks:
            weights, indices = balanced_routing(batch, num_experts, k)
            row = _measure(lambda: sparse_dispatch(x, experts, weights, indices), min_run_time)
            rows.append(dict(top_k=k, expert_calls=batch * k, **row))
        weights, _ = balanced_routing(batch, num_experts, num_experts)
        row = _measure(lambda: dense_dispatch(x, experts, weights), min_run_time)
        rows.append(dict(top_k='dense', expert_calls=batch * num_experts, **row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--channels', type=int, default=128)
    parser.add_argument('--size', type=int, default=16, help='H = W of the level')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--min-run-time', type=float, default=1.0)
    args = parser.parse_args()
    import sera_mm.models  # noqa: F401  (registers the modules)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('sera_mm'):
        rows = benchmark_top_k(args.channels, args.size, args.batch,
                               min_run_time=args.min_run_time)
    print(f'SERAFusion experts, C={args.channels} H=W={args.size} B={args.batch} '
          f'threads={torch.get_num_threads()}, balanced routing')
    for row in rows:
        print(f"top_k={row['top_k']!s:5}  GFLOPs={row['gflops']:.3f}  "
              f"expert-sample calls={row['expert_calls']:3d}  forward={row['ms']:.1f} ms")


if __name__ == '__main__':
    main()
