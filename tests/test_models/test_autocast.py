"""Every model config under CPU autocast (bf16, and fp16 where the CPU has
it): a training step (losses + backward) and a test step (tensor and
predict modes) run without dtype errors, keep what must stay float32 in
float32, and stay close to the float32 run of the same model.

The models are the configs' own at toy widths (helpers/small_models.py:
every module and option kept, widths 32, 4 x 4 patches), built once per
distinct shrunk model (configs that differ only in data or schedule share
one). The leaf configs are the model configs: configs/_base_/models/ are
pieces without a context length, each reached through its leaves.

What the comparison holds fixed, so that the difference is the rounding
alone: the same initial weights, batch and noise; dropout off (its masks
are random); and the Top-k selections of the float32 run replayed in the
autocast run (``forced_selection``): a selection is a discontinuous
function of the logits, and a rounding near a tie would swap an expert.
Everything else of the routers (logits, noise, softmax) runs as is.

The tolerances (``TOLERANCES``) are per config family and dtype, about
twice the largest difference measured over the family on this CPU (torch
2.13, AVX512-bf16). They are relative L2 differences: of each loss, of the
whole trainable gradient (one vector), and of the mask logits and the
predicted probabilities of the test step. The gradient's is large in bf16
(up to 0.22 measured: 8 mantissa bits, through up to 24 blocks, BatchNorm's
centring in the backward, random weights); the checks that catch a slip
are the dtype checks, the closeness ones a wrong result.
"""
import json
from typing import Dict, List, NamedTuple, Optional

import pytest
import torch
from torch import Tensor, nn

from sera_mm.models.fusion import SERAFusion
from sera_mm.models.routers import NoisyTopKRouter, SoftRouter
from sera_mm.registry import MODELS
from helpers.config_expectations import MODEL_EXPECTATIONS
from helpers.configs import config_files
from helpers.forced_routing import forced_selection
from helpers.small_models import make_batch, small_model_cfg

CONFIGS = config_files(bases=False)
BATCH = 4


class Tolerance(NamedTuple):
    """Largest relative L2 differences from the float32 run."""
    loss: float
    grad: float
    out: float


# yapf: disable
#: (family, dtype) -> tolerance; measured maxima in the comments (loss,
#: gradient, output: the larger of logits and probabilities).
TOLERANCES = {
    # 8.9e-3, 0.22, 2.7e-2
    ('detris', torch.bfloat16): Tolerance(loss=2e-2, grad=0.45, out=6e-2),
    # 3.1e-3, 0.10, 2.8e-3
    ('detris', torch.float16): Tolerance(loss=6e-3, grad=0.2, out=6e-3),
    # 1.1e-2, 0.20, 3.6e-2
    ('sera', torch.bfloat16): Tolerance(loss=2.5e-2, grad=0.4, out=7e-2),
    # 1.1e-3, 0.08, 3.4e-3
    ('sera', torch.float16): Tolerance(loss=3e-3, grad=0.16, out=6e-3),
    # 4.1e-3, 0.14, 2.6e-2
    ('tiny', torch.bfloat16): Tolerance(loss=1e-2, grad=0.3, out=5e-2),
    # 1.9e-3, 0.06, 2.5e-3
    ('tiny', torch.float16): Tolerance(loss=4e-3, grad=0.13, out=6e-3),
}
# yapf: enable


def family(path: str) -> str:
    """'tiny' (the CPU toys), 'detris' or 'sera' (full size; the SERA
    ablations, adapter-only included, are 'sera')."""
    expected = MODEL_EXPECTATIONS[path]
    if expected.size == 'tiny':
        return 'tiny'
    return 'detris' if expected.variant == 'detris' else 'sera'


def cpu_autocast_supports(dtype: torch.dtype) -> bool:
    """Whether CPU autocast runs a matmul in ``dtype`` (fp16 came to CPU
    autocast after bf16; an older torch warns and stays in float32)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            with torch.autocast('cpu', dtype=dtype):
                return (torch.ones(1, 2) @ torch.ones(2, 2)).dtype == dtype
        except (RuntimeError, TypeError):
            return False


def _amp_dtypes() -> list:
    params = [pytest.param(torch.bfloat16, id='bf16')]
    params.append(pytest.param(
        torch.float16, id='fp16',
        marks=pytest.mark.skipif(not cpu_autocast_supports(torch.float16),
                                 reason='this torch has no fp16 CPU autocast')))
    return params


class Run(NamedTuple):
    """What one training step and one test step gave."""
    losses: Dict[str, Tensor]
    grads: Dict[str, Tensor]
    logits: Tensor  # tensor mode, eval
    seg_logits: Tensor  # predict mode, per sample stacked
    train_selection: List[Tensor]  # Top-k indices per SERA-Fusion level
    eval_selection: List[Tensor]
    #: dtypes seen: router logits / weights, SERA-Fusion (input, output)
    router_dtypes: set
    fusion_dtypes: set


def _no_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.
        elif isinstance(module, nn.MultiheadAttention):
            module.dropout = 0.


def _run(model: nn.Module, state: dict, inputs: Tensor, samples: list,
         dtype: torch.dtype, replay: Optional[Run] = None) -> Run:
    """Loads ``state``, then a training step and a test step under
    ``torch.autocast('cpu', dtype)`` (float32: no autocast)."""
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    router_dtypes, fusion_dtypes = set(), set()

    routed = []  # what the routers returned, in call order

    def record_fusion(module, args, output):
        fusion_dtypes.add((args[0].dtype, output[0].dtype))

    hooks = [m.register_forward_hook(record_fusion) for m in model.modules()
             if isinstance(m, SERAFusion)]
    hooks += [m.register_forward_hook(lambda module, args, output: routed.append(output))
              for m in model.modules() if isinstance(m, (NoisyTopKRouter, SoftRouter))]

    def autocast():
        return torch.autocast('cpu', dtype=dtype, enabled=dtype != torch.float32)

    def selection() -> List[Tensor]:
        """The Top-k selections of the forward since the last call."""
        router_dtypes.update((r.logits.dtype, r.weights.dtype) for r in routed)
        indices = [r.indices for r in routed if r.indices is not None]
        routed.clear()
        return indices

    try:
        model.train()
        torch.manual_seed(1)
        with forced_selection(model, replay and replay.train_selection), autocast():
            losses = model(inputs, samples, mode='loss')
        losses = {k: v for k, v in losses.items() if k.startswith('loss')}
        sum(losses.values()).backward()
        train_selection = selection()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        model.eval()
        with torch.no_grad(), autocast():
            with forced_selection(model, replay and replay.eval_selection):
                logits = model(inputs, samples, mode='tensor')
            eval_selection = selection()
            with forced_selection(model, eval_selection):
                predicted = model(inputs, [s.clone() for s in samples], mode='predict')
    finally:
        for hook in hooks:
            hook.remove()
    return Run({k: v.detach() for k, v in losses.items()}, grads, logits,
               torch.stack([s.seg_logits.data for s in predicted]), train_selection,
               eval_selection, router_dtypes, fusion_dtypes)


_REFERENCES: dict = {}


def _reference(path: str):
    """(model, initial state, inputs, samples, float32 run) of the shrunk
    model of ``path``, built once per distinct model (in each worker)."""
    cfg = small_model_cfg(path)
    key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    if key not in _REFERENCES:
        _REFERENCES[key] = _build_reference(cfg)
    return _REFERENCES[key]


def _build_reference(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    _no_dropout(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, samples = make_batch(cfg, BATCH)
    return model, state, inputs, samples, _run(model, state, inputs, samples, torch.float32)


def relative(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


@pytest.mark.parametrize('dtype', _amp_dtypes())
@pytest.mark.parametrize('path', CONFIGS)
def test_training_and_test_step_under_cpu_autocast(path, dtype):
    model, state, inputs, samples, ref = _reference(path)
    run = _run(model, state, inputs, samples, dtype, replay=ref)
    tol = TOLERANCES[family(path), dtype]
    assert run.train_selection == [] or all(
        torch.equal(a, b) for a, b in zip(run.train_selection, ref.train_selection))

    # what must stay float32 does
    assert {k: v.dtype for k, v in run.losses.items()} == dict.fromkeys(ref.losses,
                                                                        torch.float32)
    assert all(torch.isfinite(v) for v in run.losses.values()), run.losses
    assert run.router_dtypes <= {(torch.float32, torch.float32)}, \
        f'router logits / weights not float32 under autocast: {run.router_dtypes}'
    assert all(i == o for i, o in run.fusion_dtypes), \
        f'SERA-Fusion changed the dtype of its level (input, output): {run.fusion_dtypes}'
    assert run.seg_logits.dtype == torch.float32
    # every parameter the float32 step reaches, the autocast step reaches
    assert sorted(run.grads) == sorted(ref.grads)
    assert {g.dtype for g in run.grads.values()} == {torch.float32}
    assert all(torch.isfinite(g).all() for g in run.grads.values())
    # the autocast run is the float32 run up to rounding
    for name, value in ref.losses.items():
        assert relative(run.losses[name], value) <= tol.loss, \
            f'{name}: {float(run.losses[name])} vs {float(value)} in float32'
    names = sorted(ref.grads)
    grad = relative(torch.cat([run.grads[n].flatten() for n in names]),
                    torch.cat([ref.grads[n].flatten() for n in names]))
    assert grad <= tol.grad, f'gradient differs by {grad:.3g} (relative L2)'
    diff = relative(run.logits, ref.logits)
    assert diff <= tol.out, f'mask logits differ by {diff:.3g} (relative L2)'
    # predict: the probabilities (its seg_logits are their clamped logits,
    # which blow rounding up where the resampled probability is near 0 or 1)
    diff = relative(run.seg_logits.sigmoid(), ref.seg_logits.sigmoid())
    assert diff <= tol.out, f'predicted probabilities differ by {diff:.3g} (relative L2)'


def test_every_family_has_a_tolerance():
    for path in CONFIGS:
        for dtype in (torch.bfloat16, torch.float16):
            assert (family(path), dtype) in TOLERANCES, path
