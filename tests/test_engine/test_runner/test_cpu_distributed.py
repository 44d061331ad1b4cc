"""setup_cpu_distributed: the gloo process group of a distributed run on a
machine without CUDA (tools/train.py and tools/test.py call it)."""
import pytest
import torch
from mmengine.config import Config

from sera_mm.engine.runner import setup_cpu_distributed


def test_cpu_distributed_setup_without_launcher_does_nothing():
    cfg = Config(dict(launcher='none', model_wrapper_cfg=dict(a=1)))
    assert setup_cpu_distributed(cfg) is False
    assert cfg.model_wrapper_cfg == dict(a=1)


def test_cpu_distributed_setup_names_missing_variable(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match='RANK'):
        setup_cpu_distributed(Config(dict(launcher='pytorch')))


def test_cpu_distributed_setup_switches_other_launchers_to_gloo(monkeypatch):
    """slurm and mpi get the gloo backend too; the rest is mmengine's."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(launcher='slurm', env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert setup_cpu_distributed(cfg) is False
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert 'model_wrapper_cfg' not in cfg
