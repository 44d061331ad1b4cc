"""Distributed runs on machines without CUDA.

The configs default to NCCL, which needs GPUs; :func:`setup_cpu_distributed`
switches every launcher to gloo, so ``dist_train.sh`` / ``dist_test.sh``
run on CPUs. mmengine 0.10.7 cannot start a ``--launcher pytorch``
(torchrun) run without a GPU: ``init_dist('pytorch')`` calls
``torch.cuda.set_device`` before creating the process group, and
``Runner.wrap_model`` passes ``device_ids=[local_rank]`` to
DistributedDataParallel, which torch refuses for a CPU module. So the gloo
group is created here (the Runner then skips ``init_dist``) and
``model_wrapper_cfg`` gets ``device_ids=None``.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepares a distributed run without CUDA; called by the tools once the
    config is final, before the Runner is built.

    Does nothing with CUDA or ``launcher='none'``. Otherwise
    ``cfg.env_cfg.dist_cfg.backend`` becomes gloo; for ``'pytorch'``,
    ``model_wrapper_cfg`` also gets ``device_ids=None`` and the process
    group is created (``dist_cfg.timeout``) unless one exists.

    Returns:
        bool: whether the process group was created here.

    Raises:
        RuntimeError: ``--launcher pytorch`` without torchrun's environment
            variables.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return False
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if launcher != 'pytorch':
        return False
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise RuntimeError(
                f"--launcher pytorch needs the environment variable {var} "
                '(set by torchrun / tools/dist_*.sh)')
    wrapper = cfg.get('model_wrapper_cfg') or {}
    wrapper = dict(wrapper)
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None  # a CPU module takes no device ids
    cfg.model_wrapper_cfg = wrapper
    if torch_dist.is_available() and torch_dist.is_initialized():
        return False
    kwargs = {}
    if dist_cfg.get('timeout') is not None:
        kwargs['timeout'] = timedelta(seconds=int(dist_cfg['timeout']))
    torch_dist.init_process_group(
        backend='gloo', rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']), **kwargs)
    return True
