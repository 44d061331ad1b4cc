"""Reading configs: the one loader of the tools and the APIs, and the walks
over a config's typed dicts and over the leaf datasets of a (wrapped)
dataset config."""
import argparse
import copy
import os.path as osp
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Tuple, Union

from mmengine.config import Config

ConfigInput = Union[str, Path, Config]


def load_config(config: ConfigInput, cfg_options: Optional[dict] = None) -> Config:
    """Reads a config file (or copies a Config) and merges ``cfg_options``.

    Args:
        config (str | Path | Config): Config file, or a Config (deep-copied,
            the caller's is left as it is).
        cfg_options (dict, optional): Overrides, as ``--cfg-options`` gives
            them (``{'a.b': value}``), merged with
            :meth:`Config.merge_from_dict`.

    Returns:
        Config: The merged config.

    Raises:
        FileNotFoundError: The config file does not exist.
        TypeError: ``config`` is neither a path nor a Config.
    """
    if isinstance(config, (str, Path)):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config not found: {config}')
        config = Config.fromfile(str(config))
    elif isinstance(config, Config):
        config = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a path or a Config, got {type(config).__name__}')
    if cfg_options:
        config.merge_from_dict(cfg_options)
    return config


def load_tool_config(args: argparse.Namespace) -> Config:
    """Loads ``args.config`` for ``tools/train.py`` and ``tools/test.py``.

    Reads the config with :func:`load_config` (``args.cfg_options``), sets
    ``launcher`` from ``args.launcher`` and the work dir (``args.work_dir``,
    else the config's, else ``./work_dirs/<config name>``), as mmseg's tools
    do.

    Args:
        args (argparse.Namespace): The tool's arguments: ``config``,
            ``cfg_options``, ``launcher`` and ``work_dir``.

    Returns:
        Config: The merged config.
    """
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def leaf_datasets(dataset_cfg: Any) -> Iterator[dict]:
    """Yields the leaf dataset dicts of a (possibly wrapped) dataset config.

    ``datasets`` (ConcatDataset and friends) is walked in order, ``dataset``
    (RepeatDataset, ClassBalancedDataset ...) is followed; a dict with
    neither is a leaf. Anything that is not a dict yields nothing.
    """
    if not isinstance(dataset_cfg, dict):
        return
    if 'datasets' in dataset_cfg:
        for sub in dataset_cfg['datasets']:
            yield from leaf_datasets(sub)
    elif 'dataset' in dataset_cfg:
        yield from leaf_datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def typed_nodes(node: Any, path: str = '') -> Iterator[Tuple[str, Mapping]]:
    """Yields ``(dotted key, dict)`` of every dict with a ``type`` key in a
    nested config (dicts, lists and tuples), parents first.

    Args:
        node: A config or a part of one.
        path (str): Dotted key of ``node`` (``''`` for a whole config), the
            prefix of the yielded keys, e.g. ``'model.neck.fusion_cfg'``.
    """
    if isinstance(node, Mapping):
        if 'type' in node:
            yield path, node
        for key, value in node.items():
            yield from typed_nodes(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from typed_nodes(value, f'{path}[{i}]')
