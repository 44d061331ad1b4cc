"""Print the trainable and total parameters of a config's model.

One row per top-level module of the model and per immediate child of the
expanded groups (the backbone by default: its layers next to its adapters),
with the trainable share of each, and the totals.

Example:
    python tools/analysis_tools/count_params.py \
        configs/sera/sera_dinov2-b_refcoco.py
    python tools/analysis_tools/count_params.py CONFIG --json params.json \
        --expand backbone text_encoder
"""
import argparse
import importlib.util
import os.path as osp
from types import ModuleType
from typing import List, Optional

from mmengine.config import DictAction
from mmengine.registry import init_default_scope


def _load_param_report() -> ModuleType:
    """tools/analysis_tools/param_report.py as a module (tools are scripts)."""
    spec = importlib.util.spec_from_file_location(
        'param_report_tool', osp.join(osp.dirname(osp.abspath(__file__)), 'param_report.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count trainable and total parameters of a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument(
        '--expand', nargs='+', default=['backbone'],
        help='top-level modules whose immediate children get rows too '
        '(default: backbone)')
    parser.add_argument('--json', metavar='OUT',
                        help='also save the rows as JSON to this file')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[dict]:
    """Builds the model of the config, prints the table, returns the rows."""
    args = parse_args(argv)
    from sera_mm import register_all_modules
    from sera_mm.registry import MODELS
    from sera_mm.utils import atomic_write_json
    from sera_mm.utils.config import load_config
    report = _load_param_report()

    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config, args.cfg_options)
    # As the Runner does: unprefixed names resolve in the config's scope.
    init_default_scope(cfg.get('default_scope') or 'sera_mm')
    if 'model' not in cfg:
        raise KeyError(f'{args.config} has no `model` to count')
    # Pretrained weights (init_cfg) are not loaded: init_weights() is not
    # called, and the counts do not depend on the values.
    model = MODELS.build(cfg.model)
    rows = report.param_report(model, expand=args.expand)
    print(f'Parameters of {cfg.model.get("type", type(model).__name__)} '
          f'({args.config}):')
    print(report.format_param_report(rows))
    if args.json:
        atomic_write_json(args.json, rows, indent=2)
        print(f'Saved the rows to {args.json}')
    return rows


if __name__ == '__main__':
    main()
