"""Converts a full checkpoint into a light one, or a light one back.

Usage:
    python tools/model_converters/light_checkpoint.py CONFIG SRC DST

A light checkpoint (``tools/train.py --light-checkpoints``) leaves out the
frozen weights that the config's pretrained files (``init_cfg`` of
``type='Pretrained'``, ``pretrained``) give bit for bit, and records each
file's path and SHA-256; everything else (trainable weights, buffers,
optimizer, schedulers, logs) is kept. ``SRC`` light gives a full ``DST``,
its frozen weights read from the recorded files (refused, naming the file,
when a file changed); ``SRC`` full gives a light ``DST``, its frozen
weights compared with the files that CONFIG names. ``DST`` must not exist
and is written atomically.

Example:
    python tools/model_converters/light_checkpoint.py \\
        configs/sera/sera_dinov2-b_refcoco.py work_dirs/sera/epoch_50.pth \\
        work_dirs/sera/epoch_50_light.pth
"""
import argparse
import os.path as osp
import sys

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a full checkpoint into a light one, or a light one back')
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('src', help='checkpoint to convert (light or full)')
    parser.add_argument('dst', help='where to write the converted checkpoint (new file)')
    return parser.parse_args()


def convert(config: str, src: str, dst: str) -> str:
    """Writes the other form of ``src`` to ``dst``; returns a one-line summary.

    Raises:
        FileExistsError: ``dst`` exists.
        ValueError: A full ``src`` holds no frozen weight that a pretrained
            file of ``config`` gives (nothing to leave out).
    """
    from sera_mm.apis import init_model
    from sera_mm.apis.inference import load_referring_checkpoint
    from sera_mm.utils import atomic_open, load_weights_only, register_checkpoint_safe_globals
    from sera_mm.utils.light_checkpoint import (FROZEN_SOURCES, light_records, make_light,
                                                restore_frozen)
    from sera_mm.utils.pretrained import pretrained_sources

    if osp.exists(dst):
        raise FileExistsError(f'{dst} exists; name a new file')
    model = init_model(config)
    register_checkpoint_safe_globals()
    checkpoint = load_weights_only(src)
    if FROZEN_SOURCES in checkpoint.get('meta', {}):
        files = [r['file'] for r in checkpoint['meta'][FROZEN_SOURCES]]
        restore_frozen(checkpoint, model)
        summary = f'light -> full: frozen weights read from {files}'
    else:
        load_referring_checkpoint(model, src)  # strict: the weights fit the config
        records = light_records(model, pretrained_sources(model.cfg.model))
        if not records:
            raise ValueError(f'{src}: no frozen weight of it is given by a pretrained file '
                             f'of {config}; a light checkpoint would save nothing')
        make_light(checkpoint, records)
        summary = (f'full -> light: {sum(len(r["keys"]) for r in records)} frozen tensors '
                   f'left to {[r["file"] for r in records]}')
    with atomic_open(dst, 'wb') as f:
        torch.save(checkpoint, f)
    return (f'{src} ({osp.getsize(src) / 2**20:.1f} MiB) -> {dst} '
            f'({osp.getsize(dst) / 2**20:.1f} MiB), {summary}')


def main() -> None:
    args = parse_args()
    try:
        print(convert(args.config, args.src, args.dst))
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
