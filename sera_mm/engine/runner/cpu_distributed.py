"""Distributed runs on machines without CUDA.

The configs default to the NCCL backend, which needs GPUs; without CUDA
:func:`setup_cpu_distributed` switches every launcher to gloo, so the same
``dist_train.sh`` / ``dist_test.sh`` commands run on CPUs. For
``--launcher pytorch`` (torchrun) more is needed, because mmengine 0.10.7
cannot start such runs by itself: ``init_dist('pytorch')`` calls
``torch.cuda.set_device(local_rank)`` before creating the process group,
which fails without a GPU ("Found no NVIDIA driver"), and
``Runner.wrap_model`` passes ``device_ids=[local_rank]`` to
DistributedDataParallel, which torch refuses for a CPU module.
:func:`setup_cpu_distributed` works around both: it creates the gloo
process group itself (the Runner then skips ``init_dist`` because the group
exists) and sets ``device_ids=None`` in ``model_wrapper_cfg``.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepares a distributed run without CUDA.

    Called by the tools after the config is final and before the Runner is
    built. Does nothing when CUDA is available or the launcher is
    ``'none'``. Otherwise ``env_cfg.dist_cfg.backend`` becomes gloo; for
    ``'slurm'`` and ``'mpi'`` the rest is left to mmengine. For
    ``'pytorch'``, ``model_wrapper_cfg`` gets ``device_ids=None`` and the
    gloo process group is created here unless one exists already.

    Args:
        cfg: the full config; ``env_cfg.dist_cfg`` (backend, timeout) is
            used for the process group, and ``model_wrapper_cfg`` is set.

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
