"""Bytes of a full and a light checkpoint of a config's model.

Builds the model with random weights, writes each frozen part to a file in
a layout its ``load_pretrained`` reads (standing in for the pretrained files
the config names: the sizes do not depend on the values), one optimizer
step with zero gradients so that the optimizer state exists, then saves the
checkpoint in full and light (:mod:`sera_mm.utils.light_checkpoint`), with
and without the optimizer state (a checkpoint to train on, one to deploy),
and prints the file sizes. Sizes only; it times nothing.

Example:
    python tools/analysis_tools/checkpoint_size.py \\
        configs/detris/detris_dinov2-b_refcoco.py configs/sera/sera_dinov2-b_refcoco.py
"""
import argparse
import os.path as osp
import tempfile
from typing import Dict, List

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Bytes of a full and a light checkpoint')
    parser.add_argument('configs', nargs='+', help='config files')
    return parser.parse_args()


def frozen_part_file(model: torch.nn.Module, module: str, path: str) -> None:
    """Writes ``model``'s ``module`` weights to ``path`` as its
    ``load_pretrained`` reads them: the text tower as an open_clip state
    dict, any other part as its own state dict."""
    part = model.get_submodule(module)
    state = part.text.state_dict() if hasattr(part, 'text') else {
        k: v for k, v in part.state_dict().items() if not k.startswith('adapters.')}
    torch.save(state, path)


def measure(config: str, folder: str) -> Dict[str, float]:
    """Saves ``config``'s model full and light into ``folder``; returns the
    sizes in MiB and the parameter counts."""
    from mmengine.optim import build_optim_wrapper

    from sera_mm.apis import init_model
    from sera_mm.utils.light_checkpoint import light_records, make_light
    from sera_mm.utils.pretrained import pretrained_sources

    model = init_model(config)
    sources = []
    for i, (module, _, _) in enumerate(pretrained_sources(model.cfg.model)):
        path = osp.join(folder, f'part{i}.pth')
        frozen_part_file(model, module, path)
        sources.append((module, path, {}))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim_wrapper = build_optim_wrapper(model, model.cfg.optim_wrapper)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optim_wrapper.optimizer.step()
    checkpoint = dict(meta=dict(epoch=1), state_dict=model.state_dict(),
                      optimizer=optim_wrapper.state_dict())
    sizes = {}
    for kind in ('full', 'light'):
        if kind == 'light':
            make_light(checkpoint, light_records(model, sources))
        for suffix, content in (('', checkpoint), (' weights', {
                k: v for k, v in checkpoint.items() if k != 'optimizer'})):
            path = osp.join(folder, f'{kind}.pth')
            torch.save(content, path)
            sizes[kind + suffix] = osp.getsize(path) / 2**20
    sizes['params'] = sum(p.numel() for p in model.parameters()) / 1e6
    sizes['trainable'] = sum(p.numel() for p in trainable) / 1e6
    return sizes


def main() -> None:
    args = parse_args()
    rows: List[str] = ['| config | parameters (M) | trainable (M) | full (MiB) | light (MiB) '
                       '| light / full | without optimizer: full / light (MiB) |',
                       '|---|---|---|---|---|---|---|']
    for config in args.configs:
        with tempfile.TemporaryDirectory() as folder:
            s = measure(config, folder)
        rows.append(f"| {osp.basename(config)} | {s['params']:.1f} | {s['trainable']:.1f} | "
                    f"{s['full']:.1f} | {s['light']:.1f} | {s['light'] / s['full']:.3f} | "
                    f"{s['full weights']:.1f} / {s['light weights']:.1f} |")
        print(rows[-1], flush=True)
    print('\n'.join(rows))


if __name__ == '__main__':
    main()
