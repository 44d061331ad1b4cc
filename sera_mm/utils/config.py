"""Reading configs: the one loader of the tools and the APIs, the check
that ``--cfg-options`` name keys a run reads, and the walk over the leaf
datasets of a (wrapped) dataset config."""
import argparse
import copy
import os.path as osp
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from mmengine.config import Config

ConfigInput = Union[str, Path, Config]

#: The hooks ``Runner.register_default_hooks`` adds unless told None.
MMENGINE_DEFAULT_HOOKS = frozenset(
    ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler', 'checkpoint'))


#: The top-level keys a run reads: mmengine 0.10's ``Runner`` (``from_cfg``;
#: ``wrap_model``, ``train`` and the model builders read the last five) and
#: sera_mm's tools (``amp_dtype``: ``tools/train.py --amp``;
#: ``test_pipeline``: the inference API's fallback without a test loader).
READ_KEYS = frozenset((
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader',
    'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper',
    'param_scheduler', 'val_evaluator', 'test_evaluator', 'default_hooks',
    'custom_hooks', 'data_preprocessor', 'load_from', 'resume', 'launcher',
    'env_cfg', 'log_processor', 'log_level', 'visualizer', 'default_scope',
    'randomness', 'experiment_name', 'model_wrapper_cfg', 'sync_bn',
    'find_unused_parameters', 'compile', 'activation_checkpointing',
    'efficient_conv_bn_eval', 'amp_dtype', 'test_pipeline'))


class UnreadOptionError(ValueError):
    """A ``--cfg-options`` key whose top-level name no part of a run reads
    (a variable of the config, or a misspelt key)."""


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
        UnreadOptionError: An option's top-level key is none of
            :data:`READ_KEYS` (e.g. ``max_epochs=1`` instead of
            ``train_cfg.max_epochs=1``): merging it would change nothing.
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
        unread = [key for key in cfg_options if key.split('.')[0] not in READ_KEYS]
        if unread:
            why = '; '.join(
                f'{key}={cfg_options[key]}: {key.split(".")[0]!r} is '
                + ('a plain variable of the config (the keys that use it took its '
                   'value when the config was read)' if key.split('.')[0] in config
                   else 'not a key of the config')
                for key in unread)
            raise UnreadOptionError(
                f'--cfg-options would change nothing a run of {config.filename} reads '
                f'({why}). Set the key the run reads instead, e.g. '
                'train_cfg.max_epochs=1, train_dataloader.dataset.data_root=DIR, '
                'model.test_cfg.threshold=0.4; the top-level keys a run reads: '
                f'{", ".join(sorted(READ_KEYS))}')
        config.merge_from_dict(cfg_options)
    return config


def load_tool_config(args: argparse.Namespace) -> Config:
    """Loads ``args.config`` for ``tools/train.py`` and ``tools/test.py``.

    Reads the config with :func:`load_config` (``args.cfg_options``), sets
    ``launcher`` from ``args.launcher`` and the work dir (``args.work_dir``,
    else the config's, else ``./work_dirs/<config name>``), as mmseg's tools
    do. A ``default_hooks`` entry set to None that is not one of mmengine's
    defaults (``default_hooks.epoch_seed=None``) is dropped, so that None
    turns off any hook, as it does mmengine's own.

    Args:
        args (argparse.Namespace): The tool's arguments: ``config``,
            ``cfg_options``, ``launcher`` and ``work_dir``.

    Returns:
        Config: The merged config.
    """
    cfg = load_config(args.config, args.cfg_options)
    hooks = cfg.get('default_hooks', None)
    if isinstance(hooks, dict):
        # The Runner takes None only for its own default hooks (it removes
        # them); for the others, such as this project's ``epoch_seed``, None
        # here means the same: no such hook.
        for name in [k for k, v in hooks.items() if v is None and k not in MMENGINE_DEFAULT_HOOKS]:
            hooks.pop(name)
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
