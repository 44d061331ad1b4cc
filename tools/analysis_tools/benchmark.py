"""Measure the cost of configs: parameters, step times, peak memory, ratios.

Builds each config's model with pretrained weights switched off (random
weights cost the same), feeds a synthetic batch through the real transforms,
and times the training step (data preprocessor + loss mode + backward) and
the forward pass (eval, no grad) with the configs' repetitions interleaved.
Reports medians, ratios to the FIRST config (of medians, and the median of
the per-round ratios) and peak memory; writes JSON with ``--json``.
``--profile [train] [forward]`` adds a per-module split of one training
step and/or forward pass (encoders, adapters, fusion, neck, decoder, head,
loss).

Example (the README's numbers; CPU, torch's default threads):
    python tools/analysis_tools/benchmark.py \
        configs/detris/detris_dinov2-b_refcoco.py configs/sera/sera_dinov2-b_refcoco.py \
        configs/ablations/sera_dinov2-b_top1_refcoco.py \
        configs/ablations/sera_dinov2-b_top4_refcoco.py \
        --names detris sera-top2 sera-top1 sera-top4 \
        --batch-size 2 --img-size 448 --device cpu --repeats 6 --warmup 1 \
        --json work_dirs/benchmark/detris_vs_sera.json
On a GPU: ``--device cuda --amp`` (bf16 autocast; peak memory from
``torch.cuda.max_memory_allocated``).
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark configs: parameters, forward and forward+backward '
        'time, peak memory, ratios to the first config')
    parser.add_argument('configs', nargs='+', help='config files; the first is the '
                        'reference of the ratios')
    parser.add_argument('--names', nargs='+', help='labels of the configs '
                        '(default: the file names without .py)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--img-size', type=int, default=448,
                        help='side of the square (letterboxed) input')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--repeats', type=int, default=10,
                        help='recorded rounds (one step per config and mode each)')
    parser.add_argument('--warmup', type=int, default=2, help='unrecorded rounds first')
    parser.add_argument('--amp', action='store_true',
                        help='bf16 autocast around the forward (meant for CUDA)')
    parser.add_argument('--forward-mode', choices=['tensor', 'predict'], default='tensor',
                        help="forward-only path: 'tensor' (the network) or 'predict' "
                        '(plus post-processing to the original size)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory steps')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the FLOP count')
    parser.add_argument('--profile', nargs='*', choices=['train', 'forward'],
                        help='also split one step per config over modules: the '
                        "training step ('train', the default when no mode is "
                        "given) and/or the forward pass ('forward')")
    parser.add_argument('--threads', type=int,
                        help="torch's intra-op threads (default: torch's default)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--keep-pretrained', action='store_true',
                        help='keep pretrained-weight references (the files must exist)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of every config, key=value')
    parser.add_argument('--json', metavar='OUT', help='save the report as JSON here')
    args = parser.parse_args(argv)
    if args.names is not None and len(args.names) != len(args.configs):
        parser.error(f'--names has {len(args.names)} labels for {len(args.configs)} configs')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    """Runs the benchmark, prints the tables, returns the report."""
    args = parse_args(argv)
    import torch

    from sera_mm.utils.benchmark import (BenchmarkCase, build_benchmark_model,
                                         format_benchmark_table, format_profile_table,
                                         make_synthetic_batch, profile_modules,
                                         run_benchmark)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(f'--device {args.device}: CUDA is not available here')

    names = args.names or [osp.splitext(osp.basename(c))[0] for c in args.configs]
    cases = []
    for name, config in zip(names, args.configs):
        model, disabled = build_benchmark_model(
            config, cfg_options=args.cfg_options, img_size=args.img_size,
            device=args.device, keep_pretrained=args.keep_pretrained, seed=args.seed)
        batch = make_synthetic_batch(model, args.batch_size, args.img_size, seed=args.seed)
        cases.append(BenchmarkCase(name, model, disabled, config, batch))
        print(f'built {name} ({config}); pretrained switched off: {disabled or "none"}',
              flush=True)

    report = run_benchmark(
        cases, repeats=args.repeats, warmup=args.warmup, amp=args.amp,
        forward_mode=args.forward_mode, memory=not args.no_memory,
        flops=not args.no_flops, seed=args.seed,
        log=lambda line: print(line, flush=True))
    report['settings']['command'] = ' '.join(['python'] + sys.argv)
    print(format_benchmark_table(report))

    if args.profile is not None:
        report['profile'] = {}
        for mode in args.profile or ['train']:
            report['profile'][mode] = {}
            for case in cases:
                rows = profile_modules(case.model, case.batch, amp=args.amp, mode=mode,
                                       forward_mode=args.forward_mode)
                report['profile'][mode][case.name] = rows
                print(format_profile_table(case.name, rows, mode))

    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)
        print(f'Saved the report to {args.json}')
    return report


if __name__ == '__main__':
    main()
