"""The config loading that ``tools/train.py`` and ``tools/test.py`` share."""
import argparse
import os.path as osp

from mmengine.config import Config


def load_tool_config(args: argparse.Namespace) -> Config:
    """Loads ``args.config`` the way mmseg's tools do; called first by the tools.

    Registers sera_mm's modules, applies ``--launcher`` and ``--cfg-options``
    and sets the work dir (``--work-dir``, else the config's, else
    ``./work_dirs/<config name>``).

    Returns:
        Config: The merged config.
    """
    from sera_mm import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg
