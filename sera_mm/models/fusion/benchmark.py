"""Micro-benchmark: SERA-Fusion's cost grows with top_k (not a test).

Run::

    OMP_NUM_THREADS=1 python -m sera_mm.models.fusion.benchmark \
        --channels 128 --size 16 --batch 8

It prints, for each k, the floating-point operations counted by
``torch.utils.flop_counter`` (deterministic), the number of expert-sample
evaluations, and the median wall time of a forward pass in eval mode.
"""
import argparse
from typing import Dict, List

import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from sera_mm.registry import MODELS


def benchmark_top_k(channels: int = 128, size: int = 16, batch: int = 8,
                    top_ks=(1, 2, 3, 4), min_run_time: float = 1.0,
                    seed: int = 0) -> List[Dict[str, float]]:
    """Measures one SERAFusion per k, all sharing the same weights.

    Returns:
        list[dict]: per k, 'top_k', 'gflops', 'expert_calls' (samples summed
        over experts) and 'ms' (median forward time).
    """
    torch.manual_seed(seed)
    x = torch.randn(batch, channels, size, size)
    base = None
    rows = []
    for k in top_ks:
        fusion = MODELS.build(dict(type='SERAFusion', channels=channels,
                                   router=dict(type='NoisyTopKRouter', top_k=k)))
        if base is None:
            base = fusion.state_dict()
        fusion.load_state_dict(base)
        fusion.eval()
        with torch.no_grad():
            counter = FlopCounterMode(display=False)
            with counter:
                _, routing = fusion(x)
            timer = benchmark.Timer(stmt='fusion(x)', globals=dict(fusion=fusion, x=x))
            ms = timer.blocked_autorange(min_run_time=min_run_time).median * 1e3
        rows.append(dict(top_k=k, gflops=counter.get_total_flops() / 1e9,
                         expert_calls=int(routing.indices.numel()), ms=ms))
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
    print(f'SERAFusion C={args.channels} H=W={args.size} B={args.batch} '
          f'threads={torch.get_num_threads()}')
    for row in rows:
        print(f"top_k={row['top_k']}  GFLOPs={row['gflops']:.3f}  "
              f"expert-sample calls={row['expert_calls']}  forward={row['ms']:.1f} ms")


if __name__ == '__main__':
    main()
