"""tools/train.py --amp, up to the optimizer wrapper the Runner builds.

mmengine's ``AmpOptimWrapper`` refuses to be built without a GPU (it asserts
``is_cuda_available()``), and torch's ``GradScaler`` disables itself when
``torch.cuda.is_available()`` is False; both are faked here (``fake_cuda``)
for the build only, so that the wrapper is the one a GPU run gets. The
Runner itself is built on the CPU from the config, with the config's model
shrunk (helpers/small_models.py). Then a few steps go through the wrapper
on the CPU: fp16 with dynamic loss scaling (DETRIS's recipe: a step whose
gradients overflow is skipped and the scale halved), bf16 through the
wrapper's own ``optim_context`` (mmengine's CPU autocast takes bf16 only).
"""
import contextlib
import os.path as osp
import sys
from unittest import mock

import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_wrapper_module
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import sera_mm
from helpers.small_models import make_batch, small_model_cfg
from helpers.tool_runner import REPO, load_tool

train_tool = load_tool('train.py')
DETRIS_B = 'configs/detris/detris_dinov2-b_refcoco.py'
SERA_B = 'configs/sera/sera_dinov2-b_refcoco.py'


@contextlib.contextmanager
def fake_cuda():
    """What AmpOptimWrapper and GradScaler check to be built as on a GPU."""
    with mock.patch.object(amp_wrapper_module, 'is_cuda_available', lambda: True), \
            mock.patch('torch.cuda.is_available', lambda: True):
        yield


@pytest.fixture(autouse=True)
def sera_scope():
    sera_mm.register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('sera_mm'):
        yield


def amp_runner(path: str, request: str, bf16_supported: bool, work_dir, **options) -> Runner:
    """The Runner tools/train.py builds for ``path --amp [request]`` (with the
    config options ``options``) on a GPU with or without bf16, on the shrunk
    model; its optim_wrapper built."""
    cfg = Config.fromfile(osp.join(REPO, path))
    cfg.merge_from_dict(options)
    train_tool.enable_amp(cfg, request, bf16_supported)
    cfg.model = small_model_cfg(path)
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    cfg.default_hooks.pop('checkpoint', None)
    runner = Runner.from_cfg(cfg)
    with fake_cuda():
        runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    return runner


def batch(runner: Runner, size: int = 4) -> dict:
    """A data batch as the loader gives it: uint8-range images and samples."""
    inputs, samples = make_batch(small_model_cfg(runner.cfg.filename), size)
    images = (inputs * 60 + 120).clamp(0, 255)
    return dict(inputs=list(images), data_samples=samples)


@pytest.mark.parametrize('argv, expected', [
    ([], None),
    (['--amp'], 'auto'),
    (['--amp', 'bfloat16'], 'bfloat16'),
    (['--amp', 'float16'], 'float16'),
])
def test_amp_argument(monkeypatch, argv, expected):
    monkeypatch.setattr(sys, 'argv', ['train.py', DETRIS_B, *argv])
    assert train_tool.parse_args().amp == expected


#: A config without an amp_dtype (every config here inherits DETRIS's
#: 'float16' from configs/_base_/models/detris_dinov2-b.py).
NO_AMP_DTYPE = dict(amp_dtype=None)


@pytest.mark.parametrize('path, options, request_, bf16_supported, dtype', [
    # DETRIS's recipe: its config's amp_dtype, also on a GPU with bf16
    (DETRIS_B, {}, 'auto', True, torch.float16),
    (DETRIS_B, {}, 'auto', False, torch.float16),
    (DETRIS_B, {}, 'bfloat16', True, torch.bfloat16),
    # SERA keeps DETRIS's amp_dtype; --amp bfloat16 asks for bf16
    (SERA_B, {}, 'auto', True, torch.float16),
    (SERA_B, {}, 'bfloat16', True, torch.bfloat16),
    # no amp_dtype: bf16 where the GPU has it (A100, H100), else fp16 (V100)
    (SERA_B, NO_AMP_DTYPE, 'auto', True, torch.bfloat16),
    (SERA_B, NO_AMP_DTYPE, 'auto', False, torch.float16),
])
def test_runner_builds_the_amp_wrapper(tmp_path, path, options, request_, bf16_supported,
                                       dtype):
    runner = amp_runner(path, request_, bf16_supported, tmp_path, **options)
    wrapper = runner.optim_wrapper
    assert type(wrapper) is AmpOptimWrapper
    assert wrapper.cast_dtype == dtype
    scaler = wrapper.loss_scaler
    assert isinstance(scaler, torch.amp.GradScaler)
    if dtype == torch.float16:  # dynamic loss scaling, torch's defaults
        assert scaler.is_enabled()
        assert (scaler._init_scale, scaler._growth_factor, scaler._backoff_factor,
                scaler._growth_interval) == (2.**16, 2., 0.5, 2000)
    else:  # bf16 has float32's range: no scaling
        assert not scaler.is_enabled()
    # the config's optimizer, over the trainable parameters only
    assert type(wrapper.optimizer).__name__ == runner.cfg.optim_wrapper.optimizer.type
    held = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert held == {id(p) for p in runner.model.parameters() if p.requires_grad}


def test_fp16_dynamic_loss_scaling_steps_on_the_cpu(tmp_path):
    """DETRIS's recipe through the built wrapper: the first steps overflow
    at 2**16 in fp16 and are skipped, each halving the scale; the first
    finite step updates the weights."""
    runner = amp_runner(DETRIS_B, 'auto', True, tmp_path)
    model, wrapper = runner.model, runner.optim_wrapper
    model.train()
    data = model.data_preprocessor(batch(runner), True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    scales, updated = [], []
    for _ in range(20):
        before = [p.detach().clone() for p in trainable]
        # what optim_context does on a GPU (mmengine's CPU autocast takes
        # bf16 only)
        with torch.autocast('cpu', dtype=wrapper.cast_dtype):
            losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        assert loss.dtype == torch.float32
        scales.append(wrapper.loss_scaler.get_scale())
        wrapper.update_params(loss)
        updated.append(any(not torch.equal(b, p) for b, p in zip(before, trainable)))
        if updated[-1]:
            break
    assert updated[-1], f'no finite step in 20 tries, scales {scales}'
    assert scales[0] == 2.**16
    # every skipped step halved the scale, and skipped steps left the weights alone
    assert scales == [2.**16 / 2**i for i in range(len(scales))]
    assert not any(updated[:-1])
    assert wrapper.loss_scaler.get_scale() == scales[-1]


def test_bf16_train_step_through_the_built_wrapper(tmp_path):
    """SERA with --amp bfloat16: Runner-built wrapper, model.train_step
    (the wrapper's optim_context: autocast bf16), no scaling, weights move."""
    runner = amp_runner(SERA_B, 'bfloat16', True, tmp_path)
    model, wrapper = runner.model, runner.optim_wrapper
    model.train()
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    seen = []
    hook = model.decoder.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        log_vars = model.train_step(batch(runner), wrapper)
    finally:
        hook.remove()
    assert seen == [torch.bfloat16]  # the forward ran under bf16 autocast
    assert all(torch.isfinite(v) for v in log_vars.values())
    moved = [n for n, p in model.named_parameters() if p.requires_grad
             and not torch.equal(p.detach(), trainable[n])]
    assert moved, 'no parameter changed'
    assert wrapper.loss_scaler.get_scale() == 1.0  # disabled: the loss is not scaled
