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
        configs/detris/detris_dinov2-b_refcoco.py configs/sera/sera_dinov2-b_refcoco.py \
        configs/ablations/sera_dinov2-b_top1_refcoco.py \
        configs/ablations/sera_dinov2-b_top4_refcoco.py \
        --names detris sera-top2 sera-top1 sera-top4 \
        --batch-size 2 --img-size 448 --device cpu --repeats 6 --warmup 1 \
        --json work_dirs/benchmark/detris_vs_sera.json
On a GPU: ``--device cuda --amp`` (bf16 autocast; peak memory from
``torch.cuda.max_memory_allocated``).

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
import itertools
import logging
import os.path as osp
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from torch import nn

from sera_mm.utils import atomic_write_json, param_report
from sera_mm.utils.config import load_config
from sera_mm.utils.pretrained import disable_pretrained

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
    of :func:`sera_mm.utils.param_report` (shared tensors count once)."""
    total = param_report(model, expand=())[-1]
    return {k: total[k] for k in ('total', 'trainable', 'trainable_share')}


# -- inputs -------------------------------------------------------------------
def _text_shape(model: nn.Module) -> Tuple[int, int]:
    """(context length L, vocabulary size) of the model's text encoder."""
    encoder = getattr(model, 'text_encoder', None)
    if encoder is None or not hasattr(encoder, 'context_length'):
        raise AttributeError(f'{type(model).__name__} has no text_encoder with a '
                             '`context_length`; the benchmark feeds sentences to it')
    embedding = None
    for module in encoder.modules():
        if isinstance(module, nn.Embedding):
            embedding = module
            break
    if embedding is None:
        raise AttributeError(f'{type(encoder).__name__} has no token nn.Embedding to '
                             'read the vocabulary size from')
    return int(encoder.context_length), int(embedding.num_embeddings)


def make_synthetic_batch(model: nn.Module, batch_size: int, img_size: int,
                         seed: int = 0) -> Dict[str, list]:
    """A batch as the dataloader would give it, for ``model``'s text encoder.

    Each sample: a random image of an original size with aspect ratio 4:3,
    3:4, 1:1, ... (so the letterbox pads), a random rectangle as the
    referent's mask and a random sentence ``[SOT, words, EOT, 0...]`` of 3 to
    L tokens (SOT/EOT the two largest ids, as CLIP's). They go through
    :class:`Letterbox` (``img_size``) and :class:`PackReferringInputs`, so
    ``gt_sem_seg``, ``text_tokens`` and the metainfo (``letterbox``,
    ``ori_shape``, ...) are the real ones.

    Returns:
        dict: ``inputs`` (list of 3 x S x S uint8 tensors) and
        ``data_samples`` (list of SegDataSample), S = ``img_size``.
    """
    from sera_mm.datasets.transforms.letterbox import Letterbox
    from sera_mm.datasets.transforms.pack_referring_inputs import PackReferringInputs

    context, vocab = _text_shape(model)
    if context < 2:
        raise ValueError(f'context_length={context}: no room for SOT and EOT')
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
        length = int(rng.integers(min(3, context), context + 1))
        tokens = np.zeros(context, dtype=np.int64)
        tokens[0], tokens[length - 1] = vocab - 2, vocab - 1
        tokens[1:length - 1] = rng.integers(1, vocab - 2, length - 2)
        results = dict(img=img, gt_seg_map=mask, seg_fields=['gt_seg_map'],
                       img_shape=(h, w), ori_shape=(h, w),
                       text_tokens=torch.from_numpy(tokens))
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


def count_flops(fn: Callable[[], None]) -> int:
    """Floating-point operations of ``fn`` (matmuls, convolutions and
    attention, forward and backward) by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
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


def routing_counts(model: nn.Module) -> Optional[List[int]]:
    """Samples routed to each expert in the last forward, summed over the
    model's Top-k routers (``last_routings`` with indices); None without."""
    routings = [r for r in getattr(model, 'last_routings', []) or []
                if getattr(r, 'indices', None) is not None]
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
    batch: Optional[Dict[str, list]] = None


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
                  log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Times the cases' training steps and forward passes, interleaved.

    Round r runs, for each case in turn, one :func:`train_step` and one
    :func:`forward_step`; the order of the cases is rotated by one every
    round (A B C, B C A, ...), so each is first equally often and load from
    other processes hits all of them alike. The first ``warmup`` rounds are
    not recorded. Then one more step per case and mode, never timed, is run
    under :func:`measure_peak_memory` (when ``memory``) and
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

    Returns:
        dict: ``settings`` (device, sizes, threads, methods, ...) and
        ``results``, one dict per case with ``name``, ``config``,
        ``params`` (:func:`count_parameters`), ``train`` and ``forward``
        (median/q25/q75/min ms, all times, ``ratio`` = median / median of
        the first case, and the paired per-round ratio's quartiles),
        ``memory`` (``train_peak_bytes``, ``forward_peak_bytes``, with
        ratios), ``flops`` (``train``, ``forward``, their ratios and the
        routing of the counted steps), ``params_ratio`` (trainable and total vs the first case),
        ``routing`` (samples per expert summed over the recorded training
        steps, or None) and ``disabled_pretrained``; and ``pairwise``:
        ``pairwise[mode][a][b]``, the median per-round ratio of case a's
        time to case b's (mode 'train' or 'forward').
    """
    if not cases:
        raise ValueError('run_benchmark: no cases')
    if repeats < 1 or warmup < 0:
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

    torch.manual_seed(seed)
    times: Dict[str, Dict[str, List[float]]] = {
        c.name: dict(train=[], forward=[]) for c in cases}
    routing: Dict[str, Optional[np.ndarray]] = {c.name: None for c in cases}
    for rnd in range(warmup + repeats):
        shift = rnd % len(cases)
        last: Dict[str, float] = {}
        for case in list(cases[shift:]) + list(cases[:shift]):
            t_train = _timed(lambda: train_step(case.model, case.batch, amp), device)
            counts = routing_counts(case.model)
            t_fwd = _timed(lambda: forward_step(case.model, case.batch, amp, forward_mode),
                           device)
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
                ('train', lambda: train_step(case.model, case.batch, amp)),
                ('forward', lambda: forward_step(case.model, case.batch, amp, forward_mode))):
            acc[mode] = _account(step, device, memory, flops)
            acc[mode]['routing'] = routing_counts(case.model)

    ref = cases[0]
    ref_params = count_parameters(ref.model)
    results = []
    for case in cases:
        params = count_parameters(case.model)
        result = dict(name=case.name, config=case.config, params=params)
        for mode in ('train', 'forward'):
            result[mode] = dict(**_summary(times[case.name][mode]),
                                **_ratios(times[case.name][mode], times[ref.name][mode]))
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
        result['params_ratio'] = dict(
            trainable=params['trainable'] / ref_params['trainable']
            if ref_params['trainable'] else None,
            total=params['total'] / ref_params['total'] if ref_params['total'] else None)
        counts = routing[case.name]
        result['routing'] = None if counts is None else counts.tolist()
        result['disabled_pretrained'] = list(case.disabled)
        results.append(result)

    settings = dict(
        device=str(device),
        batch_size=len(ref.batch['inputs']),
        input_shape=list(ref.batch['inputs'][0].shape),
        device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                     else platform.processor() or platform.machine()),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
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
                      '(matmul, conv, attention; elementwise ops not counted)'
                      if flops else None),
        reference=ref.name,
    )
    # Any two cases of the run, not only against the first (e.g. Top-1 vs
    # Top-4 in a run whose reference is the baseline).
    pairwise = {
        mode: {a.name: {b.name: _ratios(times[a.name][mode], times[b.name][mode])['paired_ratio']
                        for b in cases} for a in cases}
        for mode in ('train', 'forward')}
    return dict(settings=settings, results=results, pairwise=pairwise)


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
            if cls.endswith('Adapter'):
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
                    forward_mode: str = 'tensor') -> List[Dict[str, Any]]:
    """Splits one :func:`train_step` (or :func:`forward_step`) over module
    groups, forward and backward.

    The step runs under ``torch.profiler`` with a scope around each group
    module's forward. A forward op's time goes to its innermost group; a
    backward op ("autograd::engine::evaluate_function: XBackward") goes to
    the group of the forward op that created its autograd node (same
    sequence number). Gradient accumulation into ``.grad`` and ops outside
    every group get rows of their own. The profiler's overhead inflates
    small ops: read the shares, and take totals from :func:`run_benchmark`.

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

    Returns:
        list[dict]: One row per group (in ``groups`` order, then the extra
        rows, then ``total``) with ``group``, ``forward_ms``,
        ``backward_ms``, ``total_ms`` and ``share`` (of the total).
    """
    from torch.profiler import ProfilerActivity, profile

    groups = default_profile_groups(model) if groups is None else groups
    if mode == 'train':
        step = functools.partial(train_step, model, batch, amp)
    elif mode == 'forward':
        step = functools.partial(forward_step, model, batch, amp, forward_mode)
    else:
        raise ValueError(f"profile_modules: mode must be 'train' or 'forward', got {mode!r}")
    for _ in range(warmup):
        step()
    with _scoped(groups), profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.events()

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
        fwd[label] += event.self_cpu_time_total / 1e3
        if event.sequence_nr >= 0:
            node_group[event.sequence_nr] = label
    for event in events:
        if is_backward(event) and event.cpu_parent is None:
            if 'AccumulateGrad' in event.name:
                label = GRAD_ACCUMULATION
            else:
                label = node_group.get(event.sequence_nr, OUTSIDE_GROUPS)
            bwd[label] += event.cpu_time_total / 1e3
    # Time in the scopes themselves (hooks' Python) is the group's own.
    for event in events:
        if event.name.startswith(_SCOPE_PREFIX):
            fwd[event.name[len(_SCOPE_PREFIX):]] += event.self_cpu_time_total / 1e3

    total = sum(fwd.values()) + sum(bwd.values())
    rows = []
    for label in fwd:
        row_total = fwd[label] + bwd[label]
        rows.append(dict(group=label, forward_ms=fwd[label], backward_ms=bwd[label],
                         total_ms=row_total, share=row_total / total if total else 0.0))
    rows.append(dict(group='total', forward_ms=sum(fwd.values()),
                     backward_ms=sum(bwd.values()), total_ms=total, share=1.0))
    return rows


# -- formatting -----------------------------------------------------------------
def format_benchmark_table(report: Dict[str, Any]) -> str:
    """Renders :func:`run_benchmark`'s report as a text table."""
    from prettytable import PrettyTable  # installed with mmseg

    table = PrettyTable([
        'config', 'trainable', 'total', 'fwd+bwd ms [q25-q75]', 'x ref', 'paired x',
        'fwd ms [q25-q75]', 'x ref ', 'peak fwd+bwd MiB', 'peak fwd MiB',
        'fwd+bwd GFLOP', 'fwd GFLOP'
    ])
    table.align['config'] = 'l'
    for r in report['results']:
        tr, fw, mem = r['train'], r['forward'], r['memory']
        table.add_row([
            r['name'], f"{r['params']['trainable']:,}", f"{r['params']['total']:,}",
            f"{tr['median_ms']:.0f} [{tr['q25_ms']:.0f}-{tr['q75_ms']:.0f}]",
            f"{tr['ratio']:.3f}",
            f"{tr['paired_ratio']:.3f} [{tr['paired_ratio_q25']:.3f}-"
            f"{tr['paired_ratio_q75']:.3f}]",
            f"{fw['median_ms']:.0f} [{fw['q25_ms']:.0f}-{fw['q75_ms']:.0f}]",
            f"{fw['ratio']:.3f}",
            _mib(mem['train_peak_bytes']), _mib(mem['forward_peak_bytes']),
            _gflop(r['flops']['train']), _gflop(r['flops']['forward']),
        ])
    s = report['settings']
    lines = [
        f"device {s['device']} ({s['device_name']}), torch {s['torch']}, "
        f"{s['threads']} threads, amp {s['amp']}, forward mode '{s['forward_mode']}', "
        f"{s['repeats']} rounds after {s['warmup']} warm-up, ratios to "
        f"'{s['reference']}'",
        table.get_string(),
    ]
    names = [r['name'] for r in report['results']]
    if len(names) > 2:
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
    for r in routed:
        if r['flops']['train_routing'] is not None and r['flops']['train'] is not None:
            lines.append(f"routing of the FLOP-counted fwd+bwd step, {r['name']}: "
                         f"{r['flops']['train_routing']}")
    if s['memory_method']:
        lines.append(f"peak memory: {s['memory_method']}")
    if s['flops_method']:
        lines.append(f"FLOPs: {s['flops_method']}")
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
    parser.add_argument('configs', nargs='+', help='config files; the first is the '
                        'reference of the ratios')
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
    args = parser.parse_args(argv)
    if args.names is not None and len(args.names) != len(args.configs):
        parser.error(f'--names has {len(args.names)} labels for {len(args.configs)} configs')
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
    for name, config in zip(names, args.configs):
        model, disabled = build_benchmark_model(
            config, cfg_options=args.cfg_options, img_size=args.img_size,
            device=args.device, keep_pretrained=args.keep_pretrained, seed=args.seed)
        batch = make_synthetic_batch(model, args.batch_size, args.img_size, seed=args.seed)
        cases.append(BenchmarkCase(name, model, disabled, config, batch))
        print(f'built {name} ({config}); pretrained switched off: {disabled or "none"}',
              flush=True)

    report = run_benchmark(
        cases, repeats=args.repeats, warmup=args.warmup, amp=args.amp,
        forward_mode=args.forward_mode, memory=not args.no_memory,
        flops=not args.no_flops, seed=args.seed,
        log=lambda line: print(line, flush=True))
    report['settings']['command'] = ' '.join(['python'] + sys.argv)
    print(format_benchmark_table(report))

    if args.profile is not None:
        report['profile'] = {}
        for mode in args.profile or ['train']:
            report['profile'][mode] = {}
            for case in cases:
                rows = profile_modules(case.model, case.batch, amp=args.amp, mode=mode,
                                       forward_mode=args.forward_mode)
                report['profile'][mode][case.name] = rows
                print(format_profile_table(case.name, rows, mode))

    if args.json:
        atomic_write_json(args.json, report, indent=2)
        print(f'Saved the report to {args.json}')
    return report


if __name__ == '__main__':
    main()
