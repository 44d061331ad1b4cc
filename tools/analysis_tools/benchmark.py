"""Measure the cost of configs: parameters, step times, peak memory, ratios.

Builds each config's model with pretrained weights switched off (random
weights cost the same), feeds a synthetic batch through the real transforms,
and times the training step (data preprocessor + loss mode + backward) and
the forward pass (eval, no grad) with the configs' repetitions interleaved.
Reports medians, ratios to the FIRST config (of medians, and the median of
the per-round ratios) and peak memory; writes JSON with ``--json``.
``--profile [train] [forward]`` adds a per-module split of one training
step and/or forward pass (encoders, adapters, fusion, neck, decoder, head,
loss).

Example (the numbers of docs/en/benchmarks.md; CPU, torch's default threads):
    python tools/analysis_tools/benchmark.py \
        configs/detris/detris_dinov2-b_refcoco.py configs/ablations/sera_dinov2-b_top2_refcoco.py \
        configs/ablations/sera_dinov2-b_top1_refcoco.py \
        configs/ablations/sera_dinov2-b_top4_refcoco.py \
        --names detris sera-top2 sera-top1 sera-top4 \
        --batch-size 2 --img-size 448 --device cpu --repeats 6 --warmup 1 \
        --json work_dirs/benchmark/detris_vs_sera.json
On a GPU: ``--device cuda --amp`` (bf16 autocast; peak memory from
``torch.cuda.max_memory_allocated``; an MFU column from the GPU's dense bf16
peak, :data:`GPU_BF16_PEAK_TFLOPS`, or ``--peak-tflops``).
``--flops-only`` (``--no-time``): parameters, FLOPs and peak memory without
timed rounds (deterministic on a shared machine).
``--onnx DIR``: instead, each config exported to ONNX and its forward timed
in PyTorch eager and ONNX Runtime side by side (:func:`run_onnx_leg`; the
command of docs/en/benchmarks.md).
``--detris-root PATH``: DETRIS's own model, built by the code of a checkout of
github.com/jiaqihuang01/DETRIS with random weights, becomes the first case
(the reference of the ratios), timed in the same rounds
(:func:`build_detris_case`). FLOPs include fused attention kernels and the
attention fast paths, counted as the explicit matmuls
(:func:`attention_flop_formulas`). The whole GPU measurement is
tools/analysis_tools/benchmark_gpu.sh.

The life-cycle: :func:`build_benchmark_model` builds a config's model with
its pretrained weights switched off (costs do not depend on the values);
:func:`make_synthetic_batch` makes a batch through the real transforms
(:class:`Letterbox`, :class:`PackReferringInputs`); :func:`run_benchmark`
times every model's training step (data preprocessor, ``mode='loss'``,
backward of the summed losses) and forward pass (eval, no grad) with the
models' repetitions interleaved, measures peak memory and FLOPs on one
more (untimed) step per model and mode, and returns one result per model
with its ratios to the first one.
:func:`profile_modules` splits one training step's time over module groups
(encoders, adapters, fusion, neck, decoder, head, loss).
"""
import argparse
import contextlib
import copy
import functools
import importlib.util
import itertools
import logging
import os.path as osp
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from torch import nn

from sera_mm.utils import atomic_write_json
from sera_mm.utils.config import load_config
from sera_mm.utils.pretrained import disable_pretrained


def _load_neighbour(name: str) -> ModuleType:
    """tools/analysis_tools/<name>.py as a module (tools are scripts)."""
    spec = importlib.util.spec_from_file_location(
        f'{name}_tool', osp.join(osp.dirname(osp.abspath(__file__)), f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


param_report = _load_neighbour('param_report').param_report

#: How peak memory is measured, per device type (see :func:`measure_peak_memory`).
MEMORY_METHODS = {
    'cuda': 'torch.cuda.max_memory_allocated() during the step minus '
            'torch.cuda.memory_allocated() before it',
    'cpu': "torch.profiler(profile_memory=True): the highest running sum of the "
           "CPU allocator's allocations and frees during the step (tensor bytes "
           'allocated on top of what was live before it, like CUDA\'s figure; '
           'not RSS, so allocator caching and library scratch buffers are not '
           'counted)',
}

#: Label of time spent outside every module group in :func:`profile_modules`.
OUTSIDE_GROUPS = '(segmentor glue)'
#: Label of the backward time of gradient accumulation into ``.grad``.
GRAD_ACCUMULATION = '(grad accumulation)'
_SCOPE_PREFIX = 'sera_bench::'


# -- building -----------------------------------------------------------------
def build_benchmark_model(config: str,
                          cfg_options: Optional[dict] = None,
                          img_size: Optional[int] = None,
                          device: str = 'cpu',
                          keep_pretrained: bool = False,
                          seed: int = 0) -> Tuple[nn.Module, List[str]]:
    """Builds the model of a config for benchmarking.

    Args:
        config (str): Config file path.
        cfg_options (dict, optional): Overrides merged into the config
            (``--cfg-options``), before pretrained weights are switched off.
        img_size (int, optional): When given and the data preprocessor has
            a ``size``, it becomes ``(img_size, img_size)``.
        device (str): Where the model goes. Defaults to 'cpu'.
        keep_pretrained (bool): Keep pretrained-weight references (the files
            must exist). Defaults to False (see :func:`disable_pretrained`).
        seed (int): Seed of the random initialisation. Defaults to 0.

    Returns:
        tuple: The model (weights initialised by ``init_weights()``, in
        train mode) and the list of switched-off pretrained keys.
    """
    from sera_mm import register_all_modules
    from sera_mm.registry import MODELS

    register_all_modules(init_default_scope=False)
    cfg = load_config(config, cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'{config} has no `model` to benchmark')
    # As the Runner does: unprefixed names resolve in the config's scope.
    init_default_scope(cfg.get('default_scope') or 'sera_mm')
    model_cfg = copy.deepcopy(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict')
                              else dict(cfg.model))
    disabled = [] if keep_pretrained else disable_pretrained(model_cfg)
    preprocessor = model_cfg.get('data_preprocessor')
    if img_size is not None and isinstance(preprocessor, dict) and \
            preprocessor.get('size') is not None:
        preprocessor['size'] = (img_size, img_size)
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    if hasattr(model, 'init_weights'):
        # mmengine logs one line per parameter here; keep the report readable
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    return model.to(device).train(), disabled


def count_parameters(model: nn.Module) -> Dict[str, float]:
    """Returns ``dict(total, trainable, trainable_share)``, the ``total`` row
    of param_report.py's :func:`param_report` (shared tensors count once)."""
    total = param_report(model, expand=())[-1]
    return {k: total[k] for k in ('total', 'trainable', 'trainable_share')}


# -- inputs -------------------------------------------------------------------
def _context_length(model: nn.Module) -> int:
    """Tokens per sentence (L) of the model's text encoder."""
    encoder = getattr(model, 'text_encoder', None)
    if encoder is None or not hasattr(encoder, 'context_length'):
        raise AttributeError(f'{type(model).__name__} has no text_encoder with a '
                             '`context_length`; the benchmark feeds sentences to it')
    return int(encoder.context_length)


#: Words of the synthetic sentences: each one CLIP token.
_WORDS = ('the', 'man', 'woman', 'left', 'right', 'red', 'blue', 'big', 'small', 'on',
          'in', 'of', 'with', 'shirt', 'dog', 'car', 'chair', 'top', 'near', 'white')


def make_synthetic_batch(model: nn.Module, batch_size: int, img_size: int,
                         seed: int = 0) -> Dict[str, list]:
    """A batch as the dataloader would give it, for ``model``'s text encoder.

    Each sample: a random image of an original size with aspect ratio 4:3,
    3:4, 1:1, ... (so the letterbox pads), a random rectangle as the
    referent's mask and a random sentence of 1 to L - 2 one-token words (so
    with start and end, 3 to L tokens; the model's text encoder tokenises
    it). They go through :class:`Letterbox` (``img_size``) and
    :class:`PackReferringInputs`, so ``gt_sem_seg`` and the metainfo
    (``text``, ``letterbox``, ``ori_shape``, ...) are the real ones.

    Returns:
        dict: ``inputs`` (list of 3 x S x S uint8 tensors) and
        ``data_samples`` (list of SegDataSample), S = ``img_size``.
    """
    return synthetic_samples(batch_size, img_size, _context_length(model), seed)


def synthetic_samples(batch_size: int, img_size: int, context: int,
                      seed: int = 0) -> Dict[str, list]:
    """:func:`make_synthetic_batch` for a text encoder of ``context`` tokens."""
    from sera_mm.datasets.transforms.letterbox import Letterbox
    from sera_mm.datasets.transforms.pack_referring_inputs import PackReferringInputs

    if context < 3:
        raise ValueError(f'context_length={context}: no room for SOT, a word and EOT')
    rng = np.random.default_rng(seed)
    letterbox, pack = Letterbox(scale=img_size), PackReferringInputs()
    aspects = (4 / 3, 3 / 4, 1.0, 16 / 9, 9 / 16)
    inputs, samples = [], []
    for i in range(batch_size):
        aspect = aspects[i % len(aspects)]
        h = max(8, int(round(img_size * 1.2 / max(aspect, 1.0))))
        w = max(8, int(round(h * aspect)))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), dtype=np.uint8)
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        mask[y0:y0 + h // 3, x0:x0 + w // 3] = 1
        words = rng.choice(_WORDS, int(rng.integers(1, context - 1)))
        results = dict(img=img, gt_seg_map=mask, seg_fields=['gt_seg_map'],
                       img_shape=(h, w), ori_shape=(h, w), text=' '.join(words))
        packed = pack(letterbox(results))
        inputs.append(packed['inputs'])
        samples.append(packed['data_samples'])
    return dict(inputs=inputs, data_samples=samples)


# -- steps --------------------------------------------------------------------
def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU without parameters)."""
    return next((p.device for p in model.parameters()), torch.device('cpu'))


def train_step(model: nn.Module, batch: Dict[str, list], amp: bool = False) -> None:
    """One training step without the optimiser: the real ``loss`` path.

    Data preprocessor (``training=True``), ``model(..., mode='loss')`` (under
    bf16 autocast with ``amp``), ``model.parse_losses`` (sum of the ``loss*``
    entries) and its backward. Gradients are set to None first, so each step
    allocates them anew, as after ``optimizer.zero_grad()``.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    data = model.data_preprocessor(batch, training=True)
    with _autocast(model_device(model), amp):
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()


def forward_step(model: nn.Module, batch: Dict[str, list], amp: bool = False,
                 mode: str = 'tensor') -> None:
    """One inference pass: eval mode, no grad, data preprocessor and
    ``model(..., mode=mode)`` ('tensor': the network's logits; 'predict':
    plus resizing to each original size and thresholding)."""
    model.eval()
    with torch.no_grad(), _autocast(model_device(model), amp):
        data = model.data_preprocessor(batch, training=False)
        model(**data, mode=mode)
    model.train()


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds taken by ``fn``, the device synchronised at both ends."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure_peak_memory(fn: Callable[[], None], device: torch.device) -> Optional[int]:
    """Peak memory (bytes) that ``fn`` allocates on top of what is live.

    See :data:`MEMORY_METHODS` for the method per device type. Returns None
    on other devices or when the CPU profiler reports no memory events.
    """
    if device.type == 'cuda':
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    if device.type != 'cpu':
        return None
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # kineto's raw events keep the allocator's calls in time order (the
    # FunctionEvent list only sums them per op); nbytes < 0 is a free. Frees
    # of blocks allocated before the profiler started are not reported (c10
    # warns "Memory block of unknown size..."), so the running sum counts
    # only what the step itself allocates.
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == '[memory]' and e.device_type() == torch.autograd.DeviceType.CPU]
    if not events:
        return None
    events.sort(key=lambda e: e.start_ns())
    running = itertools.accumulate(e.nbytes() for e in events)
    return int(max(0, max(running)))


class _NoModuleTracking:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP is global."""
    parents = ('Global', )

    def __enter__(self) -> '_NoModuleTracking':
        return self

    def __exit__(self, *args) -> None:
        return None


# -- FLOP formulas of the fused attention kernels ---------------------------------
# torch.utils.flop_counter counts the CUDA kernels of scaled_dot_product_attention
# (flash, efficient, cudnn) but not the CPU's fused kernel, the "overrideable"
# one of other back-ends, nor the fast paths of nn.MultiheadAttention and
# nn.TransformerEncoderLayer (one aten op each, whose inner matmuls the
# dispatcher does not show). The formulas below count what the explicit
# computation (matmul, softmax, matmul) counts: 2 * Lq * Lk * D per head for
# Q K^T and as much for A V, twice that for the backward (dQ, dK, dV and dA
# are four matmuls of the same sizes); softmax, scaling and masks are
# elementwise, not counted (as torch counts no elementwise op).
def _attention_flops(q_shape: Sequence[int], k_shape: Sequence[int],
                     v_shape: Sequence[int]) -> int:
    """Forward FLOPs of softmax(Q K^T) V for ``(..., Lq, Dq)`` queries,
    ``(..., Lk, Dq)`` keys and ``(..., Lk, Dv)`` values.

    The leading dims (batch, heads) are the queries'; keys and values with
    fewer heads (grouped-query attention) or broadcast dims are expanded to
    them, as the kernels do.
    """
    *lead, lq, dq = q_shape
    lk, dv = k_shape[-2], v_shape[-1]
    if k_shape[-1] != dq or v_shape[-2] != lk:
        raise ValueError(f'attention shapes do not fit: q {tuple(q_shape)}, '
                         f'k {tuple(k_shape)}, v {tuple(v_shape)}')
    n = int(np.prod(lead, dtype=np.int64)) if lead else 1
    return 2 * n * lq * lk * dq + 2 * n * lq * lk * dv


def _sdpa_forward_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """``aten._scaled_dot_product_flash_attention_for_cpu`` (and the
    overrideable and MPS-math kernels): query, key, value first."""
    return _attention_flops(query, key, value)


def _sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    """Their backward: grad_out, query, key, value first; four matmuls of
    the forward's sizes (dV = A^T dO, dA = dO V^T, dQ = dS K, dK = dS^T Q).
    The kernels compute all three gradients, needed or not."""
    return 2 * _attention_flops(query, key, value)


def _flash_inplace_flops(out, query, key, value, cum_seq_q, cum_seq_k, max_q, max_k,
                         *args, out_val=None, **kwargs) -> int:
    """``aten._flash_attention_forward_no_dropout_inplace``: torch's formula
    of ``_flash_attention_forward`` (nested inputs included) on the same
    arguments after ``out``."""
    from torch.utils.flop_counter import flop_registry
    formula = flop_registry[torch.ops.aten._flash_attention_forward]
    return formula(query, key, value, cum_seq_q, cum_seq_k, max_q, max_k)


_flash_inplace_flops._get_raw = True


def _varlen_attention_flops(query, key, value, cum_seq_q, cum_seq_k, backward: bool) -> int:
    """Dense ``B x H x L x D`` inputs, or packed ``(sum L) x H x D`` ones with
    the offsets of each sample's rows (the varlen / nested layout)."""
    factor = 2 if backward else 1
    if cum_seq_q is None:
        return factor * _attention_flops(query.shape, key.shape, value.shape)
    heads, dq, dv = query.shape[1], query.shape[2], value.shape[2]
    lengths_q = cum_seq_q.diff().tolist()
    lengths_k = cum_seq_k.diff().tolist()
    return factor * sum(2 * heads * lq * lk * (dq + dv)
                        for lq, lk in zip(lengths_q, lengths_k))


def _cudnn_forward_flops(query, key, value, attn_bias, cum_seq_q, cum_seq_k, *args,
                         out_val=None, **kwargs) -> int:
    """``aten._cudnn_attention_forward`` (cuDNN's kernel, when called itself
    rather than inside ``_scaled_dot_product_cudnn_attention``, which torch
    counts)."""
    return _varlen_attention_flops(query, key, value, cum_seq_q, cum_seq_k, backward=False)


_cudnn_forward_flops._get_raw = True


def _cudnn_backward_flops(grad_out, query, key, value, out, logsumexp, philox_seed,
                          philox_offset, attn_bias, cum_seq_q, cum_seq_k, *args,
                          out_val=None, **kwargs) -> int:
    """``aten._cudnn_attention_backward``."""
    if cum_seq_q is not None and cum_seq_q.numel() == 0:
        cum_seq_q = cum_seq_k = None  # an undefined tensor passed as empty
    return _varlen_attention_flops(query, key, value, cum_seq_q, cum_seq_k, backward=True)


_cudnn_backward_flops._get_raw = True


def _sequence_lengths(x: torch.Tensor) -> List[int]:
    """Tokens of each sample of a batch-first ``B x L x E`` tensor (``L x E``:
    one sample; a nested tensor: each component's)."""
    if x.is_nested:
        return [int(size[0]) for size in x._nested_tensor_size().tolist()]
    if x.dim() == 2:
        return [int(x.shape[0])]
    return [int(x.shape[1])] * int(x.shape[0])


def _native_mha_flops(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias,
                      proj_weight, proj_bias, *args, out_val=None, **kwargs) -> int:
    """``aten._native_multi_head_attention``, nn.MultiheadAttention's fast
    path (eval, no grad, batch first): the Q, K and V projections (one
    packed matmul when query is key is value: the same FLOPs), attention
    over all heads (width ``embed_dim`` in all) and the output projection.
    Bias additions are not counted, as in ``addmm``."""
    e = int(embed_dim)
    total = 0
    for lq, lk in zip(_sequence_lengths(query), _sequence_lengths(key)):
        total += 2 * lq * e * e + 2 * 2 * lk * e * e  # Q; K and V
        total += _attention_flops((lq, e), (lk, e), (lk, e))
        total += 2 * lq * e * e  # output projection
    return total


_native_mha_flops._get_raw = True


def _encoder_layer_flops(src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight,
                         proj_bias, use_gelu, norm_first, eps, norm_weight_1, norm_bias_1,
                         norm_weight_2, norm_bias_2, ffn_weight_1, *args, out_val=None,
                         **kwargs) -> int:
    """``aten._transformer_encoder_layer_fwd``, nn.TransformerEncoderLayer's
    fast path: self-attention (as :func:`_native_mha_flops`) and the two
    FFN matmuls (width ``ffn_weight_1.shape[0]``)."""
    e, hidden = int(embed_dim), int(ffn_weight_1.shape[0])
    total = 0
    for length in _sequence_lengths(src):
        total += 2 * 3 * length * e * e + _attention_flops((length, e), (length, e),
                                                           (length, e))
        total += 2 * length * e * e + 2 * 2 * length * e * hidden
    return total


_encoder_layer_flops._get_raw = True


def attention_flop_formulas() -> Dict[Any, Callable]:
    """FLOP formulas :func:`count_flops` adds to torch's, keyed by aten op
    (``custom_mapping`` of ``FlopCounterMode``). Shape-based ones get the
    tensors' shapes; those marked ``_get_raw`` get the tensors."""
    aten = torch.ops.aten
    formulas: Dict[Any, Callable] = {
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_forward_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops,
        aten._native_multi_head_attention: _native_mha_flops,
        aten._transformer_encoder_layer_fwd: _encoder_layer_flops,
    }
    # Kernels of other back-ends (present in torch's op list, absent from
    # its FLOP registry): the same formulas, where this torch has them.
    optional = {
        '_scaled_dot_product_fused_attention_overrideable': _sdpa_forward_flops,
        '_scaled_dot_product_fused_attention_overrideable_backward': _sdpa_backward_flops,
        '_scaled_dot_product_attention_math_for_mps': _sdpa_forward_flops,
        '_flash_attention_forward_no_dropout_inplace': _flash_inplace_flops,
        '_cudnn_attention_forward': _cudnn_forward_flops,
        '_cudnn_attention_backward': _cudnn_backward_flops,
        '_triton_scaled_dot_attention': _sdpa_forward_flops,
        '_triton_multi_head_attention': _native_mha_flops,
    }
    for name, formula in optional.items():
        if hasattr(aten, name):
            formulas[getattr(aten, name)] = formula
    return formulas


def count_flops(fn: Callable[[], None]) -> int:
    """Floating-point operations of ``fn`` (matmuls, convolutions and
    attention, forward and backward) by ``torch.utils.flop_counter``, with
    the fused attention kernels and fast paths of
    :func:`attention_flop_formulas` counted as the explicit computation."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False, custom_mapping=attention_flop_formulas())
    # Only the total is needed. FlopCounterMode's per-module tracker hooks
    # fail on a module input that requires grad but has no grad_fn (a view
    # of a leaf taken under no_grad): "Expected gradient function to be set".
    counter.mod_tracker = _NoModuleTracking()
    with counter:
        fn()
    return int(counter.get_total_flops())


def _account(step: Callable[[], None], device: torch.device, memory: bool,
             flops: bool) -> Dict[str, Optional[int]]:
    """Runs ``step`` once under the memory and/or FLOP counters.

    Returns:
        dict: ``peak_bytes`` and ``flops``, None for what was not asked.
    """
    counted: Dict[str, Optional[int]] = dict(peak_bytes=None, flops=None)

    def run() -> None:
        if flops:
            counted['flops'] = count_flops(step)
        else:
            step()

    if memory:
        counted['peak_bytes'] = measure_peak_memory(run, device)
    elif flops:
        run()
    return counted


def _ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    return value / reference if value is not None and reference else None


@contextlib.contextmanager
def recorded_routing(model: nn.Module) -> Iterator[list]:
    """Collects, while open, the Top-k routing results (those with indices)
    that the neck of a ``ReferringSegmentor`` returns, forward after forward;
    nothing for other models."""
    seen: list = []

    def record(module: nn.Module, args: tuple, output: tuple) -> None:
        seen.extend(r for r in output[1] if r.indices is not None)

    routed = hasattr(model, 'router_experts')
    handle = model.neck.register_forward_hook(record) if routed else None
    try:
        yield seen
    finally:
        if handle is not None:
            handle.remove()


def routing_counts(routings: Sequence) -> Optional[List[int]]:
    """Samples routed to each expert, summed over Top-k ``routings`` (from
    :func:`recorded_routing`); None for none."""
    if not routings:
        return None
    counts = np.zeros(max(r.weights.shape[1] for r in routings), dtype=np.int64)
    for r in routings:
        counts[:r.weights.shape[1]] += np.bincount(
            r.indices.flatten().cpu().numpy(), minlength=r.weights.shape[1])
    return counts.tolist()


# -- the benchmark --------------------------------------------------------------
@dataclass
class BenchmarkCase:
    """One model to measure.

    Attributes:
        name (str): Label in the table.
        model (nn.Module): The model (see :func:`build_benchmark_model`).
        disabled (list[str]): Pretrained keys that were switched off.
        config (str): Config path, for the report.
        batch (dict): Its input batch (see :func:`make_synthetic_batch`).
    """
    name: str
    model: nn.Module
    disabled: List[str] = field(default_factory=list)
    config: str = ''
    batch: Optional[Dict[str, Any]] = None
    #: A training step of its own, ``train_fn(amp)`` (default
    #: :func:`train_step` on ``model`` and ``batch``).
    train_fn: Optional[Callable[[bool], None]] = None
    #: A forward pass of its own, ``forward_fn(amp, forward_mode)`` (default
    #: :func:`forward_step`).
    forward_fn: Optional[Callable[[bool, str], None]] = None
    #: Module groups of :func:`profile_modules` (default
    #: :func:`default_profile_groups`).
    groups: Optional[Dict[str, List[nn.Module]]] = None
    #: Facts about how the case was built, for the report.
    info: Dict[str, Any] = field(default_factory=dict)

    def train(self, amp: bool = False) -> None:
        """One training step of the case."""
        if self.train_fn is not None:
            return self.train_fn(amp)
        return train_step(self.model, self.batch, amp)

    def forward(self, amp: bool = False, forward_mode: str = 'tensor') -> None:
        """One forward pass of the case."""
        if self.forward_fn is not None:
            return self.forward_fn(amp, forward_mode)
        return forward_step(self.model, self.batch, amp, forward_mode)

    def batch_size(self) -> int:
        """Samples per step."""
        if 'inputs' in self.batch:
            return len(self.batch['inputs'])
        return int(self.batch['img'].shape[0])

    def input_shape(self) -> List[int]:
        """C x H x W of one input image."""
        if 'inputs' in self.batch:
            return list(self.batch['inputs'][0].shape)
        return list(self.batch['img'].shape[1:])


def _summary(times_s: Sequence[float]) -> Dict[str, Any]:
    ms = [1e3 * t for t in times_s]
    q25, q50, q75 = np.percentile(ms, [25, 50, 75]).tolist()
    return dict(median_ms=q50, q25_ms=q25, q75_ms=q75, min_ms=min(ms), times_ms=ms)


def _ratios(times: Sequence[float], reference: Sequence[float]) -> Dict[str, float]:
    """Ratio of medians, and the quartiles of the per-round ratios (paired:
    the two steps of a round ran back to back, so slow spells of a shared
    machine hit both)."""
    paired = [t / r for t, r in zip(times, reference)]
    q25, q50, q75 = np.percentile(paired, [25, 50, 75]).tolist()
    return dict(ratio=statistics.median(times) / statistics.median(reference),
                paired_ratio=q50, paired_ratio_q25=q25, paired_ratio_q75=q75)


def run_benchmark(cases: Sequence[BenchmarkCase],
                  repeats: int = 10,
                  warmup: int = 2,
                  amp: bool = False,
                  forward_mode: str = 'tensor',
                  memory: bool = True,
                  flops: bool = True,
                  seed: int = 0,
                  log: Optional[Callable[[str], None]] = None,
                  timing: bool = True,
                  peak_flops: Optional[float] = None) -> Dict[str, Any]:
    """Times the cases' training steps and forward passes, interleaved.

    Round r runs, for each case in turn, one training step
    (:meth:`BenchmarkCase.train`: :func:`train_step` unless the case brings
    its own) and one forward pass; the order of the cases is rotated by one
    every round (A B C, B C A, ...), so each is first equally often and load
    from other processes hits all of them alike. The first ``warmup`` rounds
    are not recorded. Then one more step per case and mode, never timed, is
    run under :func:`measure_peak_memory` (when ``memory``) and
    :func:`count_flops` (when ``flops``): deterministic figures for a
    machine whose timings are noisy (the FLOPs of a Top-k model depend on
    that step's routing, which is reported with them).

    Args:
        cases (Sequence[BenchmarkCase]): Models with their batches; the first
            is the reference of the ratios.
        repeats (int): Recorded rounds. Defaults to 10.
        warmup (int): Unrecorded rounds first. Defaults to 2.
        amp (bool): bf16 autocast around the forward. Defaults to False.
        forward_mode (str): 'tensor' or 'predict', see :func:`forward_step`.
        memory (bool): Measure peak memory. Defaults to True.
        flops (bool): Count FLOPs. Defaults to True.
        seed (int): Seeds torch's RNG (router noise, dropout) once.
        log (callable, optional): Called with a progress line per round.
        timing (bool): Run the timed rounds. False: only the accounts
            (FLOPs, memory) and parameters; every time, ratio and
            throughput is None. Defaults to True.
        peak_flops (float, optional): The device's peak FLOP/s, for the
            model FLOP utilisation (``throughput.train_mfu`` ...).

    Returns:
        dict: ``settings`` (device, sizes, threads, methods, ...) and
        ``results``, one dict per case with ``name``, ``config``,
        ``params`` (:func:`count_parameters`), ``train`` and ``forward``
        (median/q25/q75/min ms, all times, ``ratio`` = median / median of
        the first case, and the paired per-round ratio's quartiles; None
        without ``timing``), ``memory`` (``train_peak_bytes``,
        ``forward_peak_bytes``, with ratios), ``flops`` (``train``,
        ``forward``, their ratios and the routing of the counted steps),
        ``throughput`` (samples/s and FLOP/s of the median steps, and the
        MFU when ``peak_flops`` is given), ``params_ratio`` (trainable and
        total vs the first case), ``routing`` (samples per expert summed over
        the recorded training steps, or None), ``disabled_pretrained`` and
        ``info`` (the case's build facts); and ``pairwise``:
        ``pairwise[mode][a][b]``, the median per-round ratio of case a's
        time to case b's (mode 'train' or 'forward'; None without
        ``timing``).
    """
    if not cases:
        raise ValueError('run_benchmark: no cases')
    if timing and (repeats < 1 or warmup < 0):
        raise ValueError(f'run_benchmark: repeats={repeats} must be >= 1 and '
                         f'warmup={warmup} >= 0')
    if forward_mode not in ('tensor', 'predict'):
        raise ValueError(f"run_benchmark: forward_mode must be 'tensor' or 'predict', "
                         f'got {forward_mode!r}')
    if any(case.batch is None for case in cases):
        raise ValueError('run_benchmark: every case needs a batch '
                         '(make_synthetic_batch)')
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise ValueError(f'run_benchmark: case names must differ, got {names}')
    devices = {model_device(case.model) for case in cases}
    if len(devices) != 1:
        raise ValueError(f'run_benchmark: the models are on several devices {devices}')
    device = devices.pop()
    if not timing:
        repeats, warmup = 0, 0

    torch.manual_seed(seed)
    times: Dict[str, Dict[str, List[float]]] = {
        c.name: dict(train=[], forward=[]) for c in cases}
    routing: Dict[str, Optional[np.ndarray]] = {c.name: None for c in cases}
    for rnd in range(warmup + repeats):
        shift = rnd % len(cases)
        last: Dict[str, float] = {}
        for case in list(cases[shift:]) + list(cases[:shift]):
            with recorded_routing(case.model) as seen:
                t_train = _timed(lambda: case.train(amp), device)
            counts = routing_counts(seen)
            t_fwd = _timed(lambda: case.forward(amp, forward_mode), device)
            last[case.name] = t_train
            if rnd < warmup:
                continue
            times[case.name]['train'].append(t_train)
            times[case.name]['forward'].append(t_fwd)
            if counts is not None:
                prev = routing[case.name]
                routing[case.name] = np.asarray(counts) if prev is None else prev + counts
        if log is not None:
            stage = f'warm-up {rnd + 1}/{warmup}' if rnd < warmup else \
                f'round {rnd - warmup + 1}/{repeats}'
            log(f'{stage}: fwd+bwd ' + ', '.join(
                f'{c.name} {1e3 * last[c.name]:.0f} ms' for c in cases))

    # One untimed step per case and mode for the deterministic accounts:
    # peak memory and FLOPs (both need instrumentation that would distort
    # the timed steps).
    accounts: Dict[str, Dict[str, Any]] = {}
    for case in cases:
        # Free the last step's gradients first, so that the training step's
        # peak counts the gradients it allocates on both devices.
        case.model.zero_grad(set_to_none=True)
        accounts[case.name] = acc = {}
        for mode, step in (
                ('train', lambda: case.train(amp)),
                ('forward', lambda: case.forward(amp, forward_mode))):
            with recorded_routing(case.model) as seen:
                acc[mode] = _account(step, device, memory, flops)
            acc[mode]['routing'] = routing_counts(seen)
        if log is not None and flops:
            log(f"counted {case.name}: fwd+bwd {_gflop(acc['train']['flops'])} GFLOP, "
                f"fwd {_gflop(acc['forward']['flops'])} GFLOP")

    ref = cases[0]
    ref_params = count_parameters(ref.model)
    results = []
    for case in cases:
        params = count_parameters(case.model)
        result = dict(name=case.name, config=case.config, params=params)
        for mode in ('train', 'forward'):
            result[mode] = dict(**_summary(times[case.name][mode]),
                                **_ratios(times[case.name][mode], times[ref.name][mode])) \
                if timing else None
        acc, ref_acc = accounts[case.name], accounts[ref.name]
        result['memory'] = dict(
            train_peak_bytes=acc['train']['peak_bytes'],
            forward_peak_bytes=acc['forward']['peak_bytes'],
            train_peak_ratio=_ratio(acc['train']['peak_bytes'], ref_acc['train']['peak_bytes']),
            forward_peak_ratio=_ratio(acc['forward']['peak_bytes'],
                                      ref_acc['forward']['peak_bytes']))
        result['flops'] = dict(
            train=acc['train']['flops'], forward=acc['forward']['flops'],
            train_ratio=_ratio(acc['train']['flops'], ref_acc['train']['flops']),
            forward_ratio=_ratio(acc['forward']['flops'], ref_acc['forward']['flops']),
            train_routing=acc['train']['routing'], forward_routing=acc['forward']['routing'])
        result['throughput'] = _throughput(result, case.batch_size(), peak_flops)
        result['params_ratio'] = dict(
            trainable=params['trainable'] / ref_params['trainable']
            if ref_params['trainable'] else None,
            total=params['total'] / ref_params['total'] if ref_params['total'] else None)
        counts = routing[case.name]
        result['routing'] = None if counts is None else counts.tolist()
        result['disabled_pretrained'] = list(case.disabled)
        result['info'] = dict(case.info)
        results.append(result)

    settings = dict(
        device=str(device),
        batch_size=ref.batch_size(),
        input_shape=ref.input_shape(),
        device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                     else platform.processor() or platform.machine()),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        timing=timing,
        repeats=repeats,
        warmup=warmup,
        amp='bf16' if amp else None,
        forward_mode=forward_mode,
        order='round-robin, rotated by one case per round',
        time='median of the recorded rounds (perf_counter, device synchronised)',
        train_step='data_preprocessor(training=True) + loss mode + backward of '
                   'parse_losses(); no optimiser step',
        memory_method=MEMORY_METHODS.get(device.type) if memory else None,
        flops_method=('torch.utils.flop_counter.FlopCounterMode over one step '
                      '(matmul, conv, attention: fused kernels on every device and '
                      "nn.MultiheadAttention's fast path counted as the explicit "
                      'matmuls; elementwise ops not counted)'
                      if flops else None),
        peak_flops=peak_flops,
        reference=ref.name,
    )
    # Any two cases of the run, not only against the first (e.g. Top-1 vs
    # Top-4 in a run whose reference is the baseline).
    pairwise = {
        mode: {a.name: {b.name: _ratios(times[a.name][mode], times[b.name][mode])['paired_ratio']
                        for b in cases} for a in cases}
        for mode in ('train', 'forward')} if timing else None
    return dict(settings=settings, results=results, pairwise=pairwise)


def _throughput(result: Dict[str, Any], batch_size: int,
                peak_flops: Optional[float]) -> Dict[str, Optional[float]]:
    """Samples/s and FLOP/s of the median steps; MFU = FLOP/s / peak."""
    out: Dict[str, Optional[float]] = {}
    for mode in ('train', 'forward'):
        timed, counted = result[mode], result['flops'][mode]
        seconds = timed['median_ms'] / 1e3 if timed else None
        out[f'{mode}_samples_per_s'] = batch_size / seconds if seconds else None
        rate = counted / seconds if seconds and counted is not None else None
        out[f'{mode}_flops_per_s'] = rate
        out[f'{mode}_mfu'] = rate / peak_flops if rate is not None and peak_flops else None
    out['train_flops_per_sample'] = (result['flops']['train'] / batch_size
                                     if result['flops']['train'] is not None else None)
    return out


# -- DETRIS's own code (reference mode) -------------------------------------------
#: DETRIS's text tower is OpenAI CLIP ViT-B/16's (its yamls' model_name
#: 'CLIP-b-16'); ``model.clip.build_model`` reads these shapes from the
#: TorchScript archive's state dict.
_CLIP_B16 = dict(embed_dim=512, context_length=77, vocab_size=49408, text_width=512,
                 text_layers=12, vision_width=768, vision_layers=12, patch_size=16,
                 grid=14)
#: Module-level imports of DETRIS's model package that its model path never
#: calls (docs/en/environment.md, note 14); empty stand-ins where absent.
_DETRIS_OPTIONAL_IMPORTS = ('loguru', 'fvcore.nn.weight_init')
#: DETRIS's image normalisation (utils/dataset.py: CLIP's mean and std).
_DETRIS_MEAN = (0.48145466, 0.4578275, 0.40821073)
_DETRIS_STD = (0.26862954, 0.26130258, 0.27577711)


def read_detris_yaml(path: str) -> Dict[str, Any]:
    """DETRIS's config as its ``load_cfg_from_cfg_file`` reads it: the keys
    of every section of the yaml in one flat dict."""
    import yaml
    with open(path) as f:
        sections = yaml.safe_load(f)
    flat: Dict[str, Any] = {}
    for section in sections.values():
        flat.update(section or {})
    return flat


def _clip_standin_state(seed: int) -> 'Dict[str, torch.Tensor]':
    """The state-dict entries of CLIP ViT-B/16 that DETRIS's ``build_model``
    reads (shapes, layer counts) or loads into the text tower.

    Text entries are random, drawn as CLIP's own ``initialize_parameters``
    draws them (the rest of the text tower keeps that initialisation: the
    load is not strict); the visual tower's, which ``build_model`` only
    measures and then deletes, are zero-stride zeros (no memory).
    """
    c = _CLIP_B16
    gen = torch.Generator().manual_seed(seed)
    w, vw = c['text_width'], c['vision_width']

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(()).expand(*shape)

    state = {
        'visual.proj': zeros(vw, c['embed_dim']),
        'visual.conv1.weight': zeros(vw, 3, c['patch_size'], c['patch_size']),
        'visual.positional_embedding': zeros(c['grid']**2 + 1, vw),
    }
    for i in range(c['vision_layers']):
        state[f'visual.transformer.resblocks.{i}.attn.in_proj_weight'] = zeros(3 * vw, vw)
    state.update({
        'text_projection': torch.randn(w, c['embed_dim'], generator=gen) * w**-0.5,
        'positional_embedding': torch.randn(c['context_length'], w, generator=gen) * 0.01,
        'token_embedding.weight': torch.randn(c['vocab_size'], w, generator=gen) * 0.02,
        'ln_final.weight': torch.ones(w),
    })
    for i in range(c['text_layers']):
        state[f'transformer.resblocks.{i}.ln_1.weight'] = torch.ones(w)
    return state


def write_detris_weight_standins(folder: str, seed: int = 0) -> Tuple[str, str]:
    """Writes the two files DETRIS's model loads, with random weights.

    * a TorchScript archive (DETRIS calls ``torch.jit.load(clip_pretrain)``)
      whose ``state_dict()`` holds :func:`_clip_standin_state`;
    * an empty state dict for DINOv2 (``torch.load(dino_pretrain)``, loaded
      with ``strict=False``: DINOv2 keeps its own random initialisation).

    Returns:
        tuple: (clip archive path, dinov2 file path).
    """
    root = nn.Module()
    for key, value in _clip_standin_state(seed).items():
        *path, leaf = key.split('.')
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
    clip_path = osp.join(folder, 'clip_b16_random.pt')
    dino_path = osp.join(folder, 'dinov2_empty.pth')
    torch.jit.save(torch.jit.script(root), clip_path)
    torch.save({}, dino_path)
    return clip_path, dino_path


def _stub_optional_imports() -> List[str]:
    """Empty stand-ins for :data:`_DETRIS_OPTIONAL_IMPORTS` that are not
    installed; returns the names stubbed."""
    import importlib
    import types
    stubbed = []
    for name in _DETRIS_OPTIONAL_IMPORTS:
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            pass
        parts = name.split('.')
        for i in range(1, len(parts) + 1):
            sub = '.'.join(parts[:i])
            if sub not in sys.modules:
                module = types.ModuleType(sub)
                module.__path__ = []  # a package, so that submodules resolve
                sys.modules[sub] = module
                if i > 1:
                    setattr(sys.modules['.'.join(parts[:i - 1])], parts[i - 1], module)
        if name == 'loguru':
            sys.modules['loguru'].logger = logging.getLogger('detris')
        stubbed.append(name)
    return stubbed


def import_detris(root: str, device: str = 'cpu') -> Tuple[Any, Dict[str, Any]]:
    """Imports DETRIS's ``model`` package from a checkout of its code.

    DETRIS imports itself as the top-level package ``model`` (``from
    model.clip import ...``), so the checkout goes first on ``sys.path``
    while it is imported, and no other ``model`` may be imported already.
    On the CPU ``XFORMERS_DISABLED=1`` is set first (its DINOv2 then uses
    its plain attention); on CUDA its DINOv2 uses xFormers where installed,
    as in DETRIS's training.

    Returns:
        tuple: DETRIS's ``model.segmenter`` module and facts for the report
        (commit, stubbed imports, xFormers).
    """
    import importlib
    import os
    import subprocess
    root = osp.abspath(root)
    if not osp.isfile(osp.join(root, 'model', 'segmenter.py')):
        raise FileNotFoundError(
            f'--detris-root {root}: no model/segmenter.py there; give a checkout of '
            'https://github.com/jiaqihuang01/DETRIS')
    loaded = sys.modules.get('model')
    if loaded is not None and not osp.abspath(getattr(loaded, '__file__', '') or '').startswith(
            root + osp.sep):
        raise RuntimeError(f'another top-level module `model` is imported ({loaded!r}); '
                           "DETRIS's code needs that name")
    if device.startswith('cpu'):
        os.environ.setdefault('XFORMERS_DISABLED', '1')
    info: Dict[str, Any] = dict(root=root, stubbed_imports=_stub_optional_imports())
    try:
        info['commit'] = subprocess.run(['git', '-C', root, 'rev-parse', '--short', 'HEAD'],
                                        capture_output=True, text=True,
                                        check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info['commit'] = None
    sys.path.insert(0, root)
    try:
        segmenter = importlib.import_module('model.segmenter')
        attention = importlib.import_module('model.dinov2.layers.attention')
    finally:
        sys.path.remove(root)
    info['xformers'] = bool(getattr(attention, 'XFORMERS_AVAILABLE', False))
    return segmenter, info


def build_detris_case(root: str, yaml_path: str = 'config/refcoco/DETRIS_base.yaml',
                      batch_size: int = 2, img_size: int = 448, device: str = 'cpu',
                      seed: int = 0, name: str = 'detris-official') -> BenchmarkCase:
    """DETRIS's own model, built by its own code from a checkout, with
    random weights, and its batch.

    ``DETRIS(cfg)`` of ``model/segmenter.py`` is called on the yaml's
    settings (``yaml_path``, relative to ``root`` unless absolute) with
    ``clip_pretrain`` and ``dino_pretrain`` pointing at the stand-ins of
    :func:`write_detris_weight_standins` (in a temporary folder, removed
    after the build). The training step is DETRIS's (``engine/engine.py``
    without the optimiser and the metrics): ``pred, mask, loss =
    model(img, word, mask)`` under the autocast of the run, then
    ``loss.backward()``; the forward pass is ``model(img, word)`` in eval
    mode without grad. The batch is :func:`synthetic_samples` of the same
    seed as the other cases (the same images, masks and sentences), as
    DETRIS's data loader hands it over: images scaled to [0, 1] and
    normalised with CLIP's mean and std, B x 1 x S x S float masks,
    B x word_len tokens, already on the device.

    Args:
        root (str): The checkout.
        yaml_path (str): DETRIS's config.
        batch_size (int): Samples per step.
        img_size (int): Side of the input, a multiple of 14 (DINOv2's patch).
        device (str): Where the model runs.
        seed (int): Seeds the initialisation and the batch.
        name (str): Label of the case.

    Returns:
        BenchmarkCase: With DETRIS's own steps and module groups.
    """
    import tempfile
    from types import SimpleNamespace

    from sera_mm.models.text_encoders import CLIPTokenizer

    yaml_file = yaml_path if osp.isabs(yaml_path) else osp.join(root, yaml_path)
    settings = read_detris_yaml(yaml_file)
    if settings.get('model_name', 'CLIP-b-16') != 'CLIP-b-16':
        raise ValueError(f"{yaml_file}: model_name {settings.get('model_name')!r}; the "
                         'stand-in text weights are CLIP ViT-B/16\'s')
    if img_size % 14:
        raise ValueError(f'--img-size {img_size}: DETRIS needs a multiple of 14')
    segmenter, info = import_detris(root, device)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix='detris_weights_') as folder:
        clip_path, dino_path = write_detris_weight_standins(folder, seed)
        cfg = SimpleNamespace(**dict(settings, clip_pretrain=clip_path,
                                     dino_pretrain=dino_path))
        model = segmenter.DETRIS(cfg)
    model = model.to(device).train()

    samples = synthetic_samples(batch_size, img_size, int(settings['word_len']), seed)
    mean = torch.tensor(_DETRIS_MEAN).view(3, 1, 1)
    std = torch.tensor(_DETRIS_STD).view(3, 1, 1)
    img = torch.stack([(x.float() / 255. - mean) / std for x in samples['inputs']])
    mask = torch.stack([ds.gt_sem_seg.data.float() for ds in samples['data_samples']])
    word = CLIPTokenizer(int(settings['word_len']))(
        [ds.text for ds in samples['data_samples']])
    batch = dict(img=img.to(device), word=word.to(device), mask=mask.to(device))
    run_device = torch.device(device)

    def train_fn(amp: bool) -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with _autocast(run_device, amp):
            _, _, loss = model(batch['img'], batch['word'], batch['mask'])
        loss.backward()

    def forward_fn(amp: bool, forward_mode: str = 'tensor') -> None:
        # DETRIS's network output either way (its post-processing is in
        # its test loop, not in the model)
        model.eval()
        with torch.no_grad(), _autocast(run_device, amp):
            model(batch['img'], batch['word'])
        model.train()

    info.update(yaml=osp.relpath(yaml_file, root), word_len=int(settings['word_len']))
    return BenchmarkCase(name, model, [], f'{root} ({info["yaml"]})', batch,
                         train_fn=train_fn, forward_fn=forward_fn,
                         groups=detris_profile_groups(model), info=info)


def detris_profile_groups(model: nn.Module) -> Dict[str, List[nn.Module]]:
    """:func:`profile_modules` groups of DETRIS's own model, named as this
    project's (text_encoder, backbone, their adapters, neck, decoder,
    decode_head).

    DETRIS's ``fusion`` module runs both towers' blocks itself, so the
    encoders' groups are their blocks, embeddings and final norms; the loss
    is computed inline in ``DETRIS.forward`` (it falls in the glue row).
    """
    text, dino = model.txt_backbone, model.dinov2

    def of_class(root: nn.Module, suffixes: Tuple[str, ...]) -> List[nn.Module]:
        return [m for m in root.modules() if type(m).__name__.endswith(suffixes)]

    return {
        'text_encoder': list(text.transformer.resblocks) + [text.token_embedding,
                                                            text.ln_final],
        'text_encoder.adapters': of_class(text, ('Adapter', )),
        'backbone': list(dino.blocks) + [dino.patch_embed, dino.norm],
        'backbone.adapters': of_class(dino, ('Adapter', 'Aligner')),
        'neck': [model.neck],
        'decoder': [model.decoder],
        'decode_head': [model.proj],
    }


#: Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a substring of
#: ``torch.cuda.get_device_name()``, most specific first. From the vendors'
#: data sheets: H100 SXM and H200 989.4, H100 NVL 835, H100 PCIe 756, A100
#: 312, L40S 362, RTX A6000 154.8 (309.7 with sparsity), A10 125.
GPU_BF16_PEAK_TFLOPS = (
    ('H200', 989.4),
    ('H100 NVL', 835.0),
    ('H100 PCIe', 756.0),
    ('H100', 989.4),
    ('A100', 312.0),
    ('L40S', 362.0),
    ('RTX A6000', 154.8),
    ('A6000', 154.8),
    ('A10', 125.0),
)


def gpu_bf16_peak_tflops(device_name: str) -> Optional[float]:
    """The dense bf16 peak of :data:`GPU_BF16_PEAK_TFLOPS` for a device
    name, or None for a device not in the table."""
    for key, peak in GPU_BF16_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


# -- per-module profile ---------------------------------------------------------
def default_profile_groups(model: nn.Module) -> Dict[str, List[nn.Module]]:
    """Module groups of a referring segmentor for :func:`profile_modules`.

    One group per top-level child (text_encoder, backbone, neck, decoder,
    decode_head, moe_loss, ...), plus, inside them, ``<child>.adapters``
    (modules whose class name ends in 'Adapter'), ``<child>.fusion``
    ('Fusion') and ``loss`` (class name ending in 'Loss', e.g. the head's
    ``loss_decode`` and the MoE loss).
    """
    groups: Dict[str, List[nn.Module]] = {}
    for name, child in model.named_children():
        groups.setdefault(name, []).append(child)
        for sub in child.modules():
            cls = type(sub).__name__
            if sub is child:
                continue
            if cls.endswith(('Adapter', 'Aligner')):
                groups.setdefault(f'{name}.adapters', []).append(sub)
            elif cls.endswith('Fusion'):
                groups.setdefault(f'{name}.fusion', []).append(sub)
            elif cls.endswith('Loss'):
                groups.setdefault('loss', []).append(sub)
    if 'moe_loss' in groups:
        groups['loss'] = groups.get('loss', []) + groups.pop('moe_loss')
    return groups


#: Methods wrapped in a group's profiler scope: ``forward`` and the entry
#: points a parent may call instead of ``__call__`` (the segmentor calls
#: ``decode_head.loss``, which calls ``self.forward``).
_SCOPED_METHODS = ('forward', 'loss', 'predict')


@contextlib.contextmanager
def _scoped(groups: Dict[str, List[nn.Module]]) -> Iterator[None]:
    """Wraps the group modules' methods in profiler scopes named after the
    group, as instance attributes (so ``self.forward(...)`` inside a module
    is caught too, not only ``module(...)`` as forward hooks would be)."""
    patched: List[Tuple[nn.Module, str]] = []

    def wrap(label: str, method: Callable) -> Callable:
        @functools.wraps(method)
        def scoped(*args, **kwargs):
            with torch.autograd.profiler.record_function(_SCOPE_PREFIX + label):
                return method(*args, **kwargs)
        return scoped

    try:
        for label, modules in groups.items():
            for module in modules:
                for name in _SCOPED_METHODS:
                    method = getattr(module, name, None)
                    if callable(method) and name not in module.__dict__:
                        module.__dict__[name] = wrap(label, method)
                        patched.append((module, name))
        yield
    finally:
        for module, name in patched:
            module.__dict__.pop(name, None)


def profile_modules(model: nn.Module, batch: Dict[str, list], amp: bool = False,
                    groups: Optional[Dict[str, List[nn.Module]]] = None,
                    warmup: int = 1, mode: str = 'train',
                    forward_mode: str = 'tensor',
                    step: Optional[Callable[[], None]] = None) -> List[Dict[str, Any]]:
    """Splits one :func:`train_step` (or :func:`forward_step`) over module
    groups, forward and backward.

    The step runs under ``torch.profiler`` with a scope around each group
    module's forward. A forward op's time goes to its innermost group; a
    backward op ("autograd::engine::evaluate_function: XBackward") goes to
    the group of the forward op that created its autograd node (same
    sequence number). Gradient accumulation into ``.grad`` and ops outside
    every group get rows of their own. The profiler's overhead inflates
    small ops: read the shares, and take totals from :func:`run_benchmark`.
    On CUDA the times are the GPU's (the kernels each op launched, from the
    profiler's CUDA activity), not the host's launch times.

    Args:
        model (nn.Module): The model.
        batch (dict): Its batch.
        amp (bool): bf16 autocast. Defaults to False.
        groups (dict, optional): label -> modules. Defaults to
            :func:`default_profile_groups`.
        warmup (int): Unprofiled steps first. Defaults to 1.
        mode (str): 'train' (:func:`train_step`) or 'forward'
            (:func:`forward_step`: no backward rows). Defaults to 'train'.
        forward_mode (str): The forward step's mode. Defaults to 'tensor'.
        step (callable, optional): The step to profile instead of
            :func:`train_step` / :func:`forward_step` (``mode`` then only
            names it; a forward-only step has no backward rows anyway).

    Returns:
        list[dict]: One row per group (in ``groups`` order, then the extra
        rows, then ``total``) with ``group``, ``forward_ms``,
        ``backward_ms``, ``total_ms`` and ``share`` (of the total).
    """
    from torch.profiler import ProfilerActivity, profile

    groups = default_profile_groups(model) if groups is None else groups
    if mode not in ('train', 'forward'):
        raise ValueError(f"profile_modules: mode must be 'train' or 'forward', got {mode!r}")
    if step is None and mode == 'train':
        step = functools.partial(train_step, model, batch, amp)
    elif step is None:
        step = functools.partial(forward_step, model, batch, amp, forward_mode)
    device = model_device(model)
    cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for _ in range(warmup):
        step()
    _sync(device)
    with _scoped(groups), profile(activities=activities) as prof:
        step()
        _sync(device)
    # Host-side events only (ops, scopes, runtime calls); on CUDA each
    # carries the time of the kernels it launched.
    events = [e for e in prof.events()
              if e.device_type == torch.autograd.DeviceType.CPU]
    if cuda:
        def self_ms(e) -> float:
            return e.self_device_time_total / 1e3

        def total_ms(e) -> float:
            return e.device_time_total / 1e3
    else:
        def self_ms(e) -> float:
            return e.self_cpu_time_total / 1e3

        def total_ms(e) -> float:
            return e.cpu_time_total / 1e3

    def scope_of(event) -> str:
        parent = event
        while parent is not None:
            if parent.name.startswith(_SCOPE_PREFIX):
                return parent.name[len(_SCOPE_PREFIX):]
            parent = parent.cpu_parent
        return OUTSIDE_GROUPS

    def is_backward(event) -> bool:
        return event.name.startswith('autograd::engine::evaluate_function')

    def in_backward(event) -> bool:
        parent = event
        while parent is not None:
            if is_backward(parent):
                return True
            parent = parent.cpu_parent
        return False

    fwd = {label: 0.0 for label in groups}
    bwd = {label: 0.0 for label in groups}
    for extra in (OUTSIDE_GROUPS, GRAD_ACCUMULATION):
        fwd[extra], bwd[extra] = 0.0, 0.0
    # Every op records the *next* autograd node number, also ops that create
    # no node; the last op (in time) recording n is the one that created
    # node n (or an op nested in it), so later events overwrite earlier ones.
    node_group: Dict[int, str] = {}
    for event in sorted(events, key=lambda e: e.time_range.start):
        if event.name.startswith(_SCOPE_PREFIX) or in_backward(event):
            continue
        label = scope_of(event)
        fwd[label] += self_ms(event)
        if event.sequence_nr >= 0:
            node_group[event.sequence_nr] = label
    for event in events:
        if is_backward(event) and event.cpu_parent is None:
            if 'AccumulateGrad' in event.name:
                label = GRAD_ACCUMULATION
            else:
                label = node_group.get(event.sequence_nr, OUTSIDE_GROUPS)
            bwd[label] += total_ms(event)
    # Time in the scopes themselves (hooks' Python) is the group's own.
    for event in events:
        if event.name.startswith(_SCOPE_PREFIX):
            fwd[event.name[len(_SCOPE_PREFIX):]] += self_ms(event)

    total = sum(fwd.values()) + sum(bwd.values())
    rows = []
    for label in fwd:
        row_total = fwd[label] + bwd[label]
        rows.append(dict(group=label, forward_ms=fwd[label], backward_ms=bwd[label],
                         total_ms=row_total, share=row_total / total if total else 0.0))
    rows.append(dict(group='total', forward_ms=sum(fwd.values()),
                     backward_ms=sum(bwd.values()), total_ms=total, share=1.0))
    return rows


def profile_case(case: BenchmarkCase, amp: bool = False, mode: str = 'train',
                 forward_mode: str = 'tensor', warmup: int = 1) -> List[Dict[str, Any]]:
    """:func:`profile_modules` of a case: its own steps and groups where it
    has them."""
    step = None
    if mode == 'train' and case.train_fn is not None:
        step = functools.partial(case.train_fn, amp)
    elif mode == 'forward' and case.forward_fn is not None:
        step = functools.partial(case.forward_fn, amp, forward_mode)
    return profile_modules(case.model, case.batch, amp=amp, groups=case.groups,
                           warmup=warmup, mode=mode, forward_mode=forward_mode, step=step)


# -- PyTorch eager vs ONNX Runtime -------------------------------------------------
def run_onnx_leg(cases: Sequence[BenchmarkCase], onnx_dir: str, repeats: int = 10,
                 warmup: int = 2, forward_mode: str = 'tensor',
                 cfg_options: Optional[dict] = None,
                 log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Times each case's forward in PyTorch eager and in ONNX Runtime, side by side.

    Each model is exported to ``onnx_dir`` by tools/deployment/export_onnx.py
    (a dynamic batch when the batch has more than one sample) and loaded by
    ``init_model(..., backend='onnxruntime')`` with torch's thread count;
    every round runs :func:`forward_step` on the eager model and on the ONNX
    one, back to back, in alternating order. The batch's image size must be
    the configs' test-pipeline size (``--img-size``, 448 for the B configs).

    Returns:
        dict: ``settings`` and ``results``, one dict per case with ``eager``
        and ``onnxruntime`` (:func:`_summary`), ``ratio`` (ONNX Runtime's
        time over eager's, :func:`_ratios`) and ``max_abs_diff`` of the mask
        logits on the benchmark batch.
    """
    from sera_mm.apis import build_test_pipeline, init_model
    spec = importlib.util.spec_from_file_location('export_onnx_tool', osp.join(
        osp.dirname(osp.abspath(__file__)), '..', 'deployment', 'export_onnx.py'))
    exporter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exporter)
    results = []
    for case in cases:
        model = case.model.eval()
        # what init_model gives the model; the export traces the config's test pipeline
        model.cfg = load_config(case.config, cfg_options)
        model.test_pipeline = build_test_pipeline(model.cfg)
        onnx_file = osp.join(onnx_dir, f'{case.name}.onnx')
        exporter.export(model, onnx_file, dynamic_batch=case.batch_size() > 1,
                        config=case.config)
        onnx_model = init_model(model.cfg, onnx_file, backend='onnxruntime')
        steps = dict(eager=lambda: forward_step(model, case.batch, mode=forward_mode),
                     onnxruntime=lambda: forward_step(onnx_model, case.batch, mode=forward_mode))
        times: Dict[str, List[float]] = dict(eager=[], onnxruntime=[])
        for rnd in range(warmup + repeats):
            last = {}
            for name in (('eager', 'onnxruntime') if rnd % 2 else ('onnxruntime', 'eager')):
                last[name] = _timed(steps[name], torch.device('cpu'))
                if rnd >= warmup:
                    times[name].append(last[name])
            if log is not None:
                stage = f'warm-up {rnd + 1}/{warmup}' if rnd < warmup else \
                    f'round {rnd - warmup + 1}/{repeats}'
                log(f'{case.name} {stage}: ' + ', '.join(
                    f'{k} {1e3 * v:.0f} ms' for k, v in sorted(last.items())))
        model.eval()  # forward_step leaves it in train mode
        with torch.no_grad():
            data = model.data_preprocessor(case.batch, training=False)
            diff = (model(**data, mode='tensor') -
                    onnx_model(**data, mode='tensor')).abs().max().item()
        results.append(dict(name=case.name, config=case.config, max_abs_diff=diff,
                            eager=_summary(times['eager']),
                            onnxruntime=_summary(times['onnxruntime']),
                            ratio=_ratios(times['onnxruntime'], times['eager'])))
        model.train()
    ref = cases[0]
    settings = dict(device='cpu', device_name=platform.processor() or platform.machine(),
                    torch=torch.__version__, threads=torch.get_num_threads(),
                    batch_size=ref.batch_size(), input_shape=ref.input_shape(),
                    repeats=repeats, warmup=warmup, forward_mode=forward_mode,
                    order='eager and ONNX Runtime back to back, alternating which is first')
    return dict(settings=settings, results=results)


def format_onnx_table(report: Dict[str, Any]) -> str:
    """Renders :func:`run_onnx_leg`'s report as a text table."""
    from prettytable import PrettyTable

    s = report['settings']
    table = PrettyTable(['config', 'eager ms [q25-q75]', 'onnxruntime ms [q25-q75]',
                         'onnxruntime / eager', 'paired [q25-q75]', 'max |diff| logits'])
    table.align['config'] = 'l'
    for r in report['results']:
        e, o, q = r['eager'], r['onnxruntime'], r['ratio']
        table.add_row([r['name'], f"{e['median_ms']:.0f} [{e['q25_ms']:.0f}-{e['q75_ms']:.0f}]",
                       f"{o['median_ms']:.0f} [{o['q25_ms']:.0f}-{o['q75_ms']:.0f}]",
                       f"{q['ratio']:.3f}", f"{q['paired_ratio']:.3f} [{q['paired_ratio_q25']:.3f}-"
                       f"{q['paired_ratio_q75']:.3f}]", f"{r['max_abs_diff']:.1e}"])
    return (f"PyTorch eager vs ONNX Runtime (CPU provider), forward mode "
            f"'{s['forward_mode']}': {s['device_name']}, torch {s['torch']}, {s['threads']} "
            f"threads, batch {s['batch_size']}, input {s['input_shape']}, {s['repeats']} "
            f"rounds after {s['warmup']} warm-up\n" + table.get_string())


# -- formatting -----------------------------------------------------------------
def format_benchmark_table(report: Dict[str, Any]) -> str:
    """Renders :func:`run_benchmark`'s report as a text table."""
    from prettytable import PrettyTable  # installed with mmseg

    s = report['settings']
    timing = s.get('timing', True)
    mfu = s.get('peak_flops') is not None
    header = ['config', 'trainable', 'total']
    if timing:
        header += ['fwd+bwd ms [q25-q75]', 'x ref', 'paired x', 'fwd ms [q25-q75]', 'x ref ',
                   'fwd+bwd samples/s', 'fwd+bwd GFLOP/s']
        if mfu:
            header += ['fwd+bwd MFU %']
    header += ['peak fwd+bwd MiB', 'peak fwd MiB', 'fwd+bwd GFLOP', 'fwd GFLOP']
    table = PrettyTable(header)
    table.align['config'] = 'l'
    for r in report['results']:
        tr, fw, mem, thr = r['train'], r['forward'], r['memory'], r['throughput']
        row = [r['name'], f"{r['params']['trainable']:,}", f"{r['params']['total']:,}"]
        if timing:
            row += [
                f"{tr['median_ms']:.0f} [{tr['q25_ms']:.0f}-{tr['q75_ms']:.0f}]",
                f"{tr['ratio']:.3f}",
                f"{tr['paired_ratio']:.3f} [{tr['paired_ratio_q25']:.3f}-"
                f"{tr['paired_ratio_q75']:.3f}]",
                f"{fw['median_ms']:.0f} [{fw['q25_ms']:.0f}-{fw['q75_ms']:.0f}]",
                f"{fw['ratio']:.3f}",
                f"{thr['train_samples_per_s']:.2f}",
                _gflop(thr['train_flops_per_s']),
            ]
            if mfu:
                row.append('-' if thr['train_mfu'] is None else f"{100 * thr['train_mfu']:.1f}")
        row += [_mib(mem['train_peak_bytes']), _mib(mem['forward_peak_bytes']),
                _gflop(r['flops']['train']), _gflop(r['flops']['forward'])]
        table.add_row(row)
    rounds = (f"{s['repeats']} rounds after {s['warmup']} warm-up" if timing
              else 'not timed (FLOPs and memory only)')
    lines = [
        f"device {s['device']} ({s['device_name']}), torch {s['torch']}, "
        f"{s['threads']} threads, amp {s['amp']}, forward mode '{s['forward_mode']}', "
        f"batch {s['batch_size']}, input {s['input_shape']}, {rounds}, ratios to "
        f"'{s['reference']}'",
        table.get_string(),
    ]
    names = [r['name'] for r in report['results']]
    if timing and len(names) > 2:
        lines.append('fwd+bwd, median per-round ratio of row to column:')
        pair = PrettyTable([''] + names)
        pair.align[''] = 'l'
        for a in names:
            pair.add_row([a] + [f"{report['pairwise']['train'][a][b]:.3f}" for b in names])
        lines.append(pair.get_string())
    routed = [r for r in report['results'] if r['routing'] is not None]
    for r in routed:
        lines.append(f"samples per expert over the recorded training steps, "
                     f"{r['name']}: {r['routing']}")
    for r in report['results']:
        if r['flops']['train_routing'] is not None and r['flops']['train'] is not None:
            lines.append(f"routing of the FLOP-counted fwd+bwd step, {r['name']}: "
                         f"{r['flops']['train_routing']}")
    for r in report['results']:
        if r.get('info'):
            lines.append(f"{r['name']}: " + ', '.join(f'{k} {v}' for k, v in r['info'].items()))
    if s['memory_method']:
        lines.append(f"peak memory: {s['memory_method']}")
    if s['flops_method']:
        lines.append(f"FLOPs: {s['flops_method']}")
    if mfu:
        lines.append(f"MFU: FLOP/s of the median step over a peak of "
                     f"{s['peak_flops'] / 1e12:g} TFLOP/s")
    return '\n'.join(lines)


def format_profile_table(name: str, rows: List[Dict[str, Any]],
                         mode: str = 'train') -> str:
    """Renders :func:`profile_modules`' rows as a text table."""
    from prettytable import PrettyTable

    table = PrettyTable(['group', 'forward ms', 'backward ms', 'total ms', 'share %'])
    table.align['group'] = 'l'
    for row in rows:
        table.add_row([row['group'], f"{row['forward_ms']:.1f}", f"{row['backward_ms']:.1f}",
                       f"{row['total_ms']:.1f}", f"{100 * row['share']:.1f}"])
    step = 'training step' if mode == 'train' else 'forward pass'
    return f'per-module profile of one {step}, {name}:\n' + table.get_string()


def _gflop(value: Optional[int]) -> str:
    return '-' if value is None else f'{value / 1e9:.1f}'


def _mib(value: Optional[int]) -> str:
    return '-' if value is None else f'{value / 2**20:.0f}'


# -- command line ----------------------------------------------------------------
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark configs: parameters, forward and forward+backward '
        'time, peak memory, ratios to the first config')
    parser.add_argument('configs', nargs='*', help='config files; the first is the '
                        'reference of the ratios (after --detris-root\'s model)')
    parser.add_argument('--names', nargs='+', help='labels of the configs '
                        '(default: the file names without .py)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--img-size', type=int, default=448,
                        help='side of the square (letterboxed) input')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument('--repeats', type=int, default=10,
                        help='recorded rounds (one step per config and mode each)')
    parser.add_argument('--warmup', type=int, default=2, help='unrecorded rounds first')
    parser.add_argument('--amp', action='store_true',
                        help='bf16 autocast around the forward (meant for CUDA)')
    parser.add_argument('--forward-mode', choices=['tensor', 'predict'], default='tensor',
                        help="forward-only path: 'tensor' (the network) or 'predict' "
                        '(plus post-processing to the original size)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory steps')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the FLOP count')
    parser.add_argument('--flops-only', '--no-time', dest='flops_only', action='store_true',
                        help='no timed rounds: parameters and FLOPs (deterministic on '
                        'any machine; peak memory too unless --no-memory)')
    parser.add_argument('--peak-tflops', type=float,
                        help="the device's peak TFLOP/s for the MFU column (default on "
                        'CUDA: the dense bf16 peak of the GPU_BF16_PEAK_TFLOPS table, '
                        'with --amp)')
    parser.add_argument('--detris-root', metavar='PATH',
                        help="a checkout of DETRIS's own code "
                        '(github.com/jiaqihuang01/DETRIS): its model, built by its code '
                        'with random weights, becomes the first case (the reference of '
                        'the ratios)')
    parser.add_argument('--detris-config', default='config/refcoco/DETRIS_base.yaml',
                        help="DETRIS's yaml, relative to --detris-root (default: "
                        'DETRIS-B on RefCOCO)')
    parser.add_argument('--detris-name', default='detris-official',
                        help='label of the DETRIS case')
    parser.add_argument('--profile', nargs='*', choices=['train', 'forward'],
                        help='also split one step per config over modules: the '
                        "training step ('train', the default when no mode is "
                        "given) and/or the forward pass ('forward')")
    parser.add_argument('--threads', type=int,
                        help="torch's intra-op threads (default: torch's default)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--keep-pretrained', action='store_true',
                        help='keep pretrained-weight references (the files must exist)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of every config, key=value')
    parser.add_argument('--json', metavar='OUT', help='save the report as JSON here')
    parser.add_argument('--onnx', metavar='DIR',
                        help='instead of the training and forward rounds: each config '
                        'exported to DIR/<name>.onnx, its forward timed in PyTorch eager '
                        'and ONNX Runtime side by side (run_onnx_leg)')
    args = parser.parse_args(argv)
    if args.onnx and (args.detris_root or args.device != 'cpu' or args.amp):
        parser.error('--onnx times the configs on the CPU in float32: drop --detris-root, '
                     '--device and --amp')
    if args.names is not None and len(args.names) != len(args.configs):
        parser.error(f'--names has {len(args.names)} labels for {len(args.configs)} configs')
    if not args.configs and not args.detris_root:
        parser.error('give config files and/or --detris-root')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    """Runs the benchmark, prints the tables, returns the report."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(f'--device {args.device}: CUDA is not available here')

    names = args.names or [osp.splitext(osp.basename(c))[0] for c in args.configs]
    cases = []
    if args.detris_root:
        case = build_detris_case(args.detris_root, args.detris_config, args.batch_size,
                                 args.img_size, args.device, args.seed, args.detris_name)
        cases.append(case)
        print(f"built {case.name} from DETRIS's code ({case.config}, commit "
              f"{case.info['commit']}); random weights, stand-ins for "
              f"{case.info['stubbed_imports'] or 'no'} imports", flush=True)
    for name, config in zip(names, args.configs):
        model, disabled = build_benchmark_model(
            config, cfg_options=args.cfg_options, img_size=args.img_size,
            device=args.device, keep_pretrained=args.keep_pretrained, seed=args.seed)
        batch = make_synthetic_batch(model, args.batch_size, args.img_size, seed=args.seed)
        cases.append(BenchmarkCase(name, model, disabled, config, batch))
        print(f'built {name} ({config}); pretrained switched off: {disabled or "none"}',
              flush=True)

    if args.onnx:
        report = run_onnx_leg(cases, args.onnx, repeats=args.repeats, warmup=args.warmup,
                              forward_mode=args.forward_mode, cfg_options=args.cfg_options,
                              log=lambda line: print(line, flush=True))
        report['settings']['command'] = ' '.join(['python'] + sys.argv)
        print(format_onnx_table(report))
        if args.json:
            atomic_write_json(args.json, report, indent=2)
        return report

    peak = args.peak_tflops
    if peak is None and args.device.startswith('cuda') and args.amp:
        peak = gpu_bf16_peak_tflops(torch.cuda.get_device_name(torch.device(args.device)))
    report = run_benchmark(
        cases, repeats=args.repeats, warmup=args.warmup, amp=args.amp,
        forward_mode=args.forward_mode, memory=not args.no_memory,
        flops=not args.no_flops, seed=args.seed,
        log=lambda line: print(line, flush=True), timing=not args.flops_only,
        peak_flops=None if peak is None else peak * 1e12)
    report['settings']['command'] = ' '.join(['python'] + sys.argv)
    print(format_benchmark_table(report))

    if args.profile is not None:
        report['profile'] = {}
        for mode in args.profile or ['train']:
            report['profile'][mode] = {}
            for case in cases:
                rows = profile_case(case, amp=args.amp, mode=mode,
                                    forward_mode=args.forward_mode)
                report['profile'][mode][case.name] = rows
                print(format_profile_table(case.name, rows, mode))

    if args.json:
        atomic_write_json(args.json, report, indent=2)
        print(f'Saved the report to {args.json}')
    return report


if __name__ == '__main__':
    main()
