"""Train a referring segmentation model from a config.

Example:
    python tools/train.py configs/sera/sera_dinov2-b_refcoco.py
    python tools/train.py CONFIG --work-dir work_dirs/x --amp --resume
    python tools/train.py CONFIG --light-checkpoints  # frozen weights by reference
    bash tools/dist_train.sh configs/detris/detris_dinov2-b_refcoco.py 2 --amp  # DETRIS's recipe
"""
import argparse
import os

from mmengine.config import DictAction
from mmengine.runner import Runner

from sera_mm import register_all_modules
from sera_mm.engine.runner import setup_cpu_distributed
from sera_mm.utils.config import load_tool_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a sera_mm model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', action='store_true',
        help='resume from the latest checkpoint in the work dir')
    parser.add_argument(
        '--amp', nargs='?', const='auto', choices=['auto', 'float16', 'bfloat16'],
        help='automatic mixed precision: the config\'s amp_dtype (DETRIS configs: '
        'float16 with dynamic loss scaling), else bf16 where the GPU supports it, '
        'else fp16; or name the dtype')
    parser.add_argument(
        '--light-checkpoints', action='store_true',
        help='checkpoints leave out the frozen weights their pretrained files give '
        '(default_hooks.light_checkpoint.enabled=True; docs/en/custom_data.md)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value (e.g. '
        'train_dataloader.batch_size=8)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_amp(cfg, request: str, bf16_supported: bool) -> None:
    """Switches ``cfg.optim_wrapper`` to mixed precision; called for ``--amp``.

    Args:
        cfg (Config): The training config, changed in place.
        request (str): 'auto' (the config's ``amp_dtype``, else bf16 when
            ``bf16_supported``, else fp16), 'float16' or 'bfloat16'.
        bf16_supported (bool): Whether the device has bf16.

    fp16 gets dynamic loss scaling (DETRIS's GradScaler); bf16 has fp32's
    range and needs none: its scaler is built disabled (AmpOptimWrapper's
    default would scale dynamically).
    """
    optim_wrapper = cfg.optim_wrapper.type
    if optim_wrapper == 'AmpOptimWrapper':
        print('AMP training is already enabled in your config.')
        return
    if optim_wrapper != 'OptimWrapper':
        raise ValueError(f'--amp is only supported with OptimWrapper, got {optim_wrapper}')
    dtype = request
    if dtype == 'auto':
        dtype = cfg.get('amp_dtype') or ('bfloat16' if bf16_supported else 'float16')
    if dtype not in ('float16', 'bfloat16'):
        raise ValueError(f"amp_dtype={dtype!r} in the config; choose 'float16' or 'bfloat16'")
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = dtype
    cfg.optim_wrapper.loss_scale = 'dynamic' if dtype == 'float16' else dict(enabled=False)


def main() -> None:
    args = parse_args()
    register_all_modules()
    cfg = load_tool_config(args)

    if args.amp:
        import torch
        enable_amp(cfg, args.amp,
                   torch.cuda.is_available() and torch.cuda.is_bf16_supported())

    if args.light_checkpoints:
        cfg.merge_from_dict({'default_hooks.light_checkpoint':
                             dict(type='LightCheckpointHook', enabled=True)})
    cfg.resume = args.resume
    setup_cpu_distributed(cfg)

    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
