"""Routing statistics of a checkpoint on test splits (the paper's figure 9).

Runs the test dataloader of the config once per split and records what the
routers choose: per SERA-Fusion level and expert, the selection frequency
(share of sentences that route to the expert) and the mean routing weight
(0 where not selected) with its standard deviation; per SERA-Adapter block
the soft router's weights (mean and spread). Writes:

    OUT/routing_stats.json       everything, per split
    OUT/routing_level<i>.png     one chart per SERA-Fusion level: grouped bars
                                 per expert, one colour per split
    OUT/routing_fusion.png       the same, every level in one picture
    OUT/routing_adapter.png      the SERA-Adapter weights per block

Examples::

    python tools/analysis_tools/routing_stats.py \
        configs/sera/sera_dinov2-b_refcoco.py work_dirs/sera/best.pth \
        --splits val testA testB --out work_dirs/sera/routing
    python tools/analysis_tools/routing_stats.py \
        configs/synthetic/sera-tiny_synthetic.py work_dirs/demo/epoch_6.pth --out routing/
"""
import argparse
import copy
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, List, Optional

JSON_NAME = 'routing_stats.json'
ADAPTER_PNG = 'routing_adapter.png'
FUSION_PNG = 'routing_fusion.png'


def level_png(level: int) -> str:
    return f'routing_level{level}.png'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Per-expert routing statistics of a checkpoint on test splits')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--splits', nargs='+', default=['val'],
                        help="splits to run, each with the config's test dataloader "
                        '(default: val)')
    parser.add_argument('--out', required=True, help='output folder (JSON and PNGs)')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--batch-size', type=int, help="override the dataloader's batch size")
    parser.add_argument('--num-workers', type=int,
                        help="override the dataloader's worker count")
    parser.add_argument('--max-batches', type=int,
                        help='stop each split after this many batches (quick looks)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    return parser.parse_args(argv)


def split_dataloader_cfg(cfg, split: str, batch_size: Optional[int] = None,
                         num_workers: Optional[int] = None) -> dict:
    """The config's test dataloader, reading ``split`` in test mode (one
    sample per sentence)."""
    loader = copy.deepcopy(cfg.test_dataloader)
    dataset = loader['dataset']
    if 'split' not in dataset and dataset.get('type', '').split('.')[-1] != 'RefCOCODataset':
        raise KeyError(f'{cfg.filename}: test_dataloader.dataset has no `split` to set '
                       f'(type {dataset.get("type")})')
    dataset['split'] = split
    dataset['test_mode'] = True
    if batch_size is not None:
        loader['batch_size'] = batch_size
    if num_workers is not None:
        loader['num_workers'] = num_workers
    if not loader.get('num_workers'):
        loader['persistent_workers'] = False  # torch refuses it without workers
    return loader


def collect(model, dataloader, max_batches: Optional[int] = None) -> dict:
    """Runs ``model.test_step`` over ``dataloader`` and summarises the routing
    its predictions carry.

    Returns:
        dict: ``samples`` (sentences seen), ``fusion`` ``{'level<i>': {expert:
        {'freq', 'weight', 'weight_std'}}}`` and ``adapter`` ``{module name:
        {expert: stats}}`` (see :class:`ModelRoutingStatistics`).
    """
    import torch

    from sera_mm.engine.hooks.routing_stats import ModelRoutingStatistics
    stats = ModelRoutingStatistics(model)
    if stats.empty:
        raise ValueError('the model has no router (no SERA-Fusion level and no '
                         'SERA-Adapter): nothing to analyse')
    samples = 0
    with torch.no_grad():
        for i, batch in enumerate(dataloader):
            if max_batches is not None and i >= max_batches:
                break
            stats.update(model.test_step(batch))
            samples += len(batch['data_samples'])
    summary = stats.summary()
    fusion = OrderedDict((k.split('.', 1)[1], v) for k, v in summary.items()
                         if k.startswith('fusion.'))
    adapter = OrderedDict((k, v) for k, v in summary.items() if not k.startswith('fusion.'))
    return dict(samples=samples, fusion=fusion, adapter=adapter)


def _block_label(name: str) -> str:
    last = name.split('.')[-1]
    return f'block {last}' if last.isdigit() else name


def _grouped_bars(ax, groups: List[str], series: Dict[str, List[float]],
                  errors: Optional[Dict[str, List[float]]] = None) -> None:
    """Bars of each series side by side at every group position."""
    import numpy as np
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for j, (label, values) in enumerate(series.items()):
        ax.bar(x + (j - (n - 1) / 2) * width, values, width, label=label,
               color=f'C{j}', yerr=None if errors is None else errors[label],
               capsize=3 if errors is not None else 0, edgecolor='white', linewidth=0.5)
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylim(0, 1.05)
    ax.grid(axis='y', alpha=0.3)
    ax.set_axisbelow(True)


def _level_axes(axes, level: str, results: Dict[str, dict], top_k: Optional[int]) -> None:
    """Draws a level's selection frequency and mean weight into two axes."""
    splits = list(results)
    experts = list(results[splits[0]]['fusion'][level])
    labels = {s: f'{s} (n={results[s]["samples"]})' for s in splits}
    for ax, key, title in ((axes[0], 'freq', 'selection frequency'),
                           (axes[1], 'weight', 'mean routing weight')):
        series = {labels[s]: [results[s]['fusion'][level][e][key] for e in experts]
                  for s in splits}
        errors = None
        if key == 'weight':
            errors = {labels[s]: [results[s]['fusion'][level][e]['weight_std']
                                  for e in experts] for s in splits}
        _grouped_bars(ax, experts, series, errors)
        # uniform routing: each expert picked by k/E of the sentences, weight 1/E
        uniform = (top_k or 1) / len(experts) if key == 'freq' else 1 / len(experts)
        ax.axhline(uniform, color='grey', linestyle='--', linewidth=1,
                   label='uniform routing')
        k_text = f', top-{top_k}' if top_k else ''
        ax.set_title(f'{_level_label(level)}{k_text}: {title}', fontsize=10)
    axes[0].set_ylabel('share of sentences')
    axes[1].set_ylabel('weight (mean, whiskers ± std)')


def _level_label(level: str) -> str:
    return f'level {level[len("level"):]}' if level.startswith('level') else level


def _finish(fig, axes_with_legend, path: str, title: str) -> None:
    handles, names = axes_with_legend.get_legend_handles_labels()
    fig.suptitle(title)
    fig.legend(handles, names, loc='lower center', ncol=len(names), fontsize=8,
               frameon=False)
    bottom = 0.5 / fig.get_size_inches()[1]  # room for the legend, in figure units
    fig.tight_layout(rect=(0, bottom, 1, 1))
    from sera_mm.utils import atomic_open
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png')


def plot_level(path: str, level: str, results: Dict[str, dict], top_k: Optional[int]) -> None:
    """One PNG per SERA-Fusion level: selection frequency and mean weight."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    _level_axes(axes, level, results, top_k)
    _finish(fig, axes[0], path, f'SERA-Fusion {_level_label(level)}: per-expert routing')
    plt.close(fig)


def plot_fusion(path: str, results: Dict[str, dict], top_k: List[Optional[int]]) -> None:
    """Every SERA-Fusion level in one PNG, one row per level."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    levels = list(results[next(iter(results))]['fusion'])
    fig, axes = plt.subplots(len(levels), 2, figsize=(9, 2.9 * len(levels) + 0.5), dpi=90,
                             squeeze=False)
    for i, level in enumerate(levels):
        _level_axes(axes[i], level, results, top_k[i] if i < len(top_k) else None)
    _finish(fig, axes[0][0], path, 'SERA-Fusion: per-expert routing')
    plt.close(fig)


def plot_adapter(path: str, results: Dict[str, dict]) -> None:
    """One PNG for the SERA-Adapters: per expert, the mean soft-router weight
    of every block (bars) and its spread (whiskers: std), one colour per split."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    splits = list(results)
    blocks = list(results[splits[0]]['adapter'])
    experts = list(results[splits[0]]['adapter'][blocks[0]])
    labels = {s: f'{s} (n={results[s]["samples"]})' for s in splits}
    fig, axes = plt.subplots(1, len(experts), figsize=(4.5 * len(experts), 3.6), dpi=100,
                             squeeze=False)
    for ax, expert in zip(axes[0], experts):
        series = {labels[s]: [results[s]['adapter'][b][expert]['weight'] for b in blocks]
                  for s in splits}
        errors = {labels[s]: [results[s]['adapter'][b][expert]['weight_std'] for b in blocks]
                  for s in splits}
        _grouped_bars(ax, [_block_label(b) for b in blocks], series, errors)
        ax.axhline(1 / len(experts), color='grey', linestyle='--', linewidth=1,
                   label='uniform routing')
        ax.set_title(f'{expert} expert')
    axes[0][0].set_ylabel('soft-router weight (mean, whiskers ± std)')
    _finish(fig, axes[0][0], path, 'SERA-Adapter: soft-router weights per block')
    plt.close(fig)


def fusion_top_k(model) -> List[Optional[int]]:
    """Top-k of each SERA-Fusion level's router (None for a soft router)."""
    neck = getattr(model, 'neck', None)
    return [getattr(f.router, 'top_k', None) for f in (getattr(neck, 'fusions', None) or [])]


def main(argv: Optional[List[str]] = None) -> dict:
    """Runs the splits, writes the JSON and the PNGs; returns the JSON dict."""
    args = parse_args(argv)
    from mmengine.runner import Runner

    from sera_mm.apis import init_model
    from sera_mm.utils import atomic_write_json

    model = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=args.cfg_options)
    results: Dict[str, dict] = OrderedDict()
    for split in args.splits:
        loader = Runner.build_dataloader(split_dataloader_cfg(
            model.cfg, split, args.batch_size, args.num_workers))
        results[split] = collect(model, loader, args.max_batches)
        print(f'{split}: {results[split]["samples"]} sentences')

    os.makedirs(args.out, exist_ok=True)
    top_k = fusion_top_k(model)
    report = dict(config=args.config, checkpoint=args.checkpoint,
                  fusion_top_k=top_k, splits=results)
    json_path = osp.join(args.out, JSON_NAME)
    atomic_write_json(json_path, report, indent=2)
    print(f'wrote {json_path}')
    first = results[args.splits[0]]
    for i, level in enumerate(first['fusion']):
        path = osp.join(args.out, level_png(i))
        plot_level(path, level, results, top_k[i] if i < len(top_k) else None)
        print(f'wrote {path}')
    if first['fusion']:
        path = osp.join(args.out, FUSION_PNG)
        plot_fusion(path, results, top_k)
        print(f'wrote {path}')
    if first['adapter']:
        path = osp.join(args.out, ADAPTER_PNG)
        plot_adapter(path, results)
        print(f'wrote {path}')
    _print_table(results)
    return report


def _print_table(results: Dict[str, dict]) -> None:
    for split, res in results.items():
        for group in ('fusion', 'adapter'):
            for router, experts in res[group].items():
                cells = '  '.join(f'{e}: f {v["freq"]:.3f} w {v["weight"]:.3f}'
                                  for e, v in experts.items())
                print(f'{split:6s} {router:28s} {cells}')


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
