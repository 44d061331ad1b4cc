"""Checks run by the tools before anything is built.

A config that names a data file or a pretrained checkpoint which is not on
disk should fail at once, with the path and the README section that explains
where the file comes from, not minutes later inside the Runner.
"""
import os.path as osp
from typing import List

from mmengine.config import Config

from .config import leaf_datasets, typed_nodes
from .pretrained import pretrained_files

DATA_HELP = "see the README section 'Data preparation'"
WEIGHTS_HELP = "see the README section 'Pretrained weights'"


def missing_inputs(cfg: Config, mode: str = 'train') -> List[str]:
    """Lists the data and weight files that ``cfg`` needs but that are absent.

    Args:
        cfg (Config): The full config.
        mode (str): 'train' checks the train and val data and the
            pretrained weights, 'test' the test data only (at test time the
            Runner loads the whole model from the checkpoint and never reads
            the pretrained files).

    Returns:
        list[str]: One message per missing file, naming the config key.
    """
    loaders = ['train_dataloader', 'val_dataloader'] if mode == 'train' \
        else ['test_dataloader']
    problems = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for ds in leaf_datasets(loader_cfg.get('dataset')):
            root = ds.get('data_root', '') or ''
            if root and not osp.isdir(root):
                problems.append(f'{loader}.dataset.data_root: directory {root!r} '
                                f'does not exist ({DATA_HELP})')
                continue
            for key in ('ann_file', 'split_file'):
                name = ds.get(key)
                if not name:
                    continue
                path = name if osp.isabs(name) else osp.join(root, name)
                if not osp.isfile(path):
                    problems.append(f'{loader}.dataset.{key}: file {path!r} does '
                                    f'not exist ({DATA_HELP})')
    pretrained = pretrained_files(cfg.get('model', {})) if mode == 'train' else ()
    for key, path in pretrained:
        if '://' not in path and not osp.isfile(path):
            problems.append(f'{key}: pretrained weights {path!r} not found ({WEIGHTS_HELP})')
    return problems


def unregistered_types(cfg: Config) -> List[str]:
    """Lists the config keys whose ``type`` names no registered class.

    A ``type`` is known when any registry of the sera_mm scope finds it
    (its own classes, its parents' and, for ``'scope.Name'``, the other
    packages'), so the check needs no table of which key uses which
    registry; it catches misspelt names, the usual case. Call it after
    ``register_all_modules()``.

    Returns:
        list[str]: One message per unknown type, naming the config key
        (e.g. ``model.neck.fusion_cfg.router.type``).
    """
    from mmengine.registry import Registry

    import sera_mm.registry as sera_registry
    registries = [r for r in vars(sera_registry).values()
                  if isinstance(r, Registry)]
    problems: List[str] = []

    for key, node in typed_nodes(cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)):
        name = node['type']
        if isinstance(name, str) and not any(r.get(name) is not None for r in registries):
            problems.append(f'{key}.type: {name!r} is not a registered '
                            'class (misspelt, or its module not imported?)')
    return problems


def check_config_inputs(cfg: Config, mode: str = 'train') -> None:
    """Raises FileNotFoundError listing every missing input of ``cfg``.

    Called by ``tools/train.py`` and ``tools/test.py`` before the Runner is
    built.
    """
    unknown = unregistered_types(cfg)
    if unknown:
        raise KeyError(
            f'{cfg.filename or "config"}: unknown type(s):\n  - ' + '\n  - '.join(unknown))
    problems = missing_inputs(cfg, mode)
    if problems:
        raise FileNotFoundError(
            f'{cfg.filename or "config"}: missing input(s):\n  - ' + '\n  - '.join(problems))
