"""Measure a GPU in one command: training throughput, MFU, memory, time split.

Meant for a CUDA machine with nothing but this repository (no data set, no
pretrained weights); ``tools/analysis_tools/benchmark_gpu.sh`` calls it,
after installing the OpenMMLab stack from carried wheels where it is
missing (tools/analysis_tools/device_bootstrap.py). Sized to a 15-minute
loan: at most 8 minutes on one H100 from the shell script's start (the
install included, ``--budget-s``), the legs in order of importance, each
timed and recorded even when a later one fails or is skipped:

1. ``data``: the synthetic REFER set (tools/dataset_converters/
   generate_synthetic.py), images of 448-560 px a side, letterboxed to 448
   by the configs' pipelines.
2. ``loader``: the training data loader alone (the configs' pipeline, the
   workers of the training legs): samples/s, against the training steps'.
3. ``models`` and ``flops``: both models built once (ViT-B, 448 px, kept
   for step 5); FLOPs of one training step per sample
   (torch.utils.flop_counter, fused attention counted) at the first
   training batch size: the MFU of every training leg.
4. ``train:<config>:b<N>``: real training iterations of SERA-B and DETRIS-B
   through tools/train.py (``--amp bfloat16``, Adam as the configs, constant
   learning rate, no validation, no checkpoints; pretrained weights switched
   off with sera_mm.utils.disable_pretrained on a dumped copy of the
   config) at batch 16, then 32: samples/s after the warm-up iterations
   (mmengine's logged iteration times), data-wait share, peak memory, MFU.
5. ``benchmark:b<N>``: tools/analysis_tools/benchmark.py's measurement at
   batch 16 and 32 (forward+backward without the optimiser, and forward;
   bf16 autocast; interleaved rounds), and ``profile``: the GPU time of one
   training step split over encoders, adapters, fusion, neck, decoder, head
   and loss (batch 16).
6. ``compile``: SERA's training leg again with mmengine's ``compile=True``
   (torch.compile of the train step): speed-up over the eager leg.

MFU = training FLOPs per sample (step 3) x samples/s / the GPU's dense bf16
peak (benchmark.GPU_BF16_PEAK_TFLOPS by device name, or --peak-tflops).
Writes ``<out-dir>/benchmark_gpu.json`` and ``<out-dir>/benchmark_gpu.md``
(atomically, after every leg, MFU included), and prints the Markdown. A leg
that would start when less than its need is left of the budget is skipped
and marked so; a training leg that runs past it is stopped and summarised
from the iterations it logged.

``--dry-run`` runs every leg on the CPU at toy size (the tiny synthetic
configs, 112 px, batch 2 and 4, a few iterations; fp32 training, as
mmengine's AmpOptimWrapper needs CUDA, and the benchmark legs under the
CPU's bf16 autocast) so that the first GPU run does not fail on a typo;
tests/test_tools/test_benchmark_gpu.py runs it in the project's venv and
tests/test_tools/test_device_bootstrap.py on a bare one.

Examples::

    bash tools/analysis_tools/benchmark_gpu.sh                 # the GPU run
    bash tools/analysis_tools/benchmark_gpu.sh --dry-run --out-dir /tmp/bgpu
"""
import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
HERE = osp.dirname(osp.abspath(__file__))

#: The two configs measured: name -> config (ViT-B, 448 px) and its dry-run stand-in.
CONFIGS = OrderedDict([
    ('detris', ('configs/detris/detris_dinov2-b_refcoco.py',
                'configs/synthetic/detris-tiny_synthetic.py')),
    ('sera', ('configs/sera/sera_dinov2-b_refcoco.py',
              'configs/synthetic/sera-tiny_synthetic.py')),
])
#: The order of the training legs at each batch size (the paper's model first).
TRAIN_ORDER = ('sera', 'detris')
#: Settings of a GPU run and of a dry run. The GPU budget counts from the
#: shell script's start (SERA_BENCH_T0), the install included: 8 minutes
#: less a margin for the report and the machine's hand-over.
PRESETS = dict(
    gpu=dict(img_size=448, image_range=(448, 560), num_images=160, train_batches=(16, 32),
             iters=200, log_interval=10, skip_iters=40, workers=8, batch_sizes=(16, 32),
             repeats=6, warmup=2, loader_batches=40, compile_iters=150, amp=True,
             bench_amp=True, device='cuda', budget_s=450.0),
    dry=dict(img_size=112, image_range=(96, 160), num_images=8, train_batches=(2, 4),
             iters=6, log_interval=2, skip_iters=2, workers=1, batch_sizes=(2, 4),
             repeats=2, warmup=1, loader_batches=3, compile_iters=4, amp=False,
             bench_amp=True, device='cpu', budget_s=None),
)
#: Seconds of budget a leg needs to start (a GPU run's estimates: a
#: tools/train.py leg spends about 20 s starting up).
NEEDS_S = dict(flops=30.0, train=45.0, benchmark=20.0, profile=15.0, compile=120.0)
#: Seconds of budget kept for writing the report when a training leg is
#: stopped at the budget.
REPORT_RESERVE_S = 10.0


def _load_benchmark():
    """tools/analysis_tools/benchmark.py as a module (tools are scripts)."""
    spec = importlib.util.spec_from_file_location('benchmark_tool',
                                                  osp.join(HERE, 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='work_dirs/benchmark_gpu',
                        help='where the data set, the runs and the report go')
    parser.add_argument('--dry-run', action='store_true',
                        help='every leg on the CPU at toy size (the tiny synthetic '
                        'configs), in about a minute')
    parser.add_argument('--peak-tflops', type=float,
                        help="the GPU's dense bf16 peak (default: by device name from "
                        "benchmark.py's GPU_BF16_PEAK_TFLOPS)")
    parser.add_argument('--iters', type=int, help='training iterations per leg')
    parser.add_argument('--train-batches', type=int, nargs='+',
                        help='batch sizes of the training legs (GPU default 16 32)')
    parser.add_argument('--batch-sizes', type=int, nargs='+',
                        help='batch sizes of the benchmark legs')
    parser.add_argument('--workers', type=int, help='data loader workers')
    parser.add_argument('--num-images', type=int, help='synthetic training images')
    parser.add_argument('--budget-s', type=float,
                        help='time budget of the whole run, from the shell script\'s start '
                        '(GPU default 450 s; a leg that would start with less than it '
                        'needs left is skipped)')
    parser.add_argument('--compile', dest='compile', action='store_true', default=None,
                        help='run the torch.compile leg (default: on a GPU, off in a dry run)')
    parser.add_argument('--no-compile', dest='compile', action='store_false')
    parser.add_argument('--skip', nargs='+', default=[],
                        choices=['loader', 'flops', 'train', 'benchmark', 'profile',
                                 'compile'],
                        help='legs to leave out')
    parser.add_argument('--detris-root', metavar='PATH',
                        help="also time DETRIS's own code (a checkout) in the benchmark "
                        'legs, as the reference of the ratios')
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> Dict[str, Any]:
    """The preset of the run with the command line's overrides."""
    s = dict(PRESETS['dry' if args.dry_run else 'gpu'])
    for key in ('iters', 'workers', 'num_images', 'budget_s'):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    if args.batch_sizes:
        s['batch_sizes'] = tuple(args.batch_sizes)
    if args.train_batches:
        s['train_batches'] = tuple(args.train_batches)
    s['compile'] = (not args.dry_run) if args.compile is None else args.compile
    s['skip'] = list(args.skip) + ([] if s['compile'] else ['compile'])
    s['dry_run'] = args.dry_run
    s['configs'] = OrderedDict((name, pair[1] if args.dry_run else pair[0])
                               for name, pair in CONFIGS.items())
    return s


# -- the report ----------------------------------------------------------------------
class Report:
    """The JSON report, written atomically (with its Markdown) after each leg."""

    def __init__(self, out_dir: str, settings: Dict[str, Any]):
        self.out_dir = out_dir
        # the budget counts from the shell script's start (the install included)
        t0 = os.environ.get('SERA_BENCH_T0')
        before = max(0.0, time.time() - float(t0)) if t0 else 0.0
        self.start = time.perf_counter() - before
        self.budget_s = settings['budget_s']
        self.data: Dict[str, Any] = OrderedDict(
            settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
            environment={}, legs=[], data=None, loader=None, flops=None, train={},
            benchmark={}, profile={}, compile=None, mfu=None, before_s=before)

    def elapsed(self) -> float:
        """Seconds since the shell script started (or this report was made)."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        return float('inf') if self.budget_s is None else self.budget_s - self.elapsed()

    def leg(self, name: str, fn: Callable[[], Any], needs_s: float = 0.0) -> Any:
        """Runs one leg: records its status and seconds, never raises."""
        record = OrderedDict(name=name, status='ok', seconds=None, error=None)
        self.data['legs'].append(record)
        if self.left() < needs_s:
            record['status'] = 'skipped'
            record['error'] = (f'time budget: {self.left():.0f} s left of '
                               f'{self.budget_s:.0f}, the leg needs about {needs_s:.0f}')
            print(f'[{name}] skipped: {record["error"]}', flush=True)
            self.save()
            return None
        print(f'[{name}] starting at {self.elapsed():.0f} s', flush=True)
        start = time.perf_counter()
        result = None
        try:
            result = fn()
        except Exception as exc:  # a failed leg must not lose the others
            record['status'] = 'failed'
            record['error'] = f'{type(exc).__name__}: {exc}'
            traceback.print_exc()
        record['seconds'] = time.perf_counter() - start
        print(f'[{name}] {record["status"]} in {record["seconds"]:.1f} s', flush=True)
        self.save()
        return result

    def save(self) -> None:
        """Writes the JSON and the Markdown (after every leg), with the MFU
        of the legs that have both their samples/s and the FLOPs."""
        from sera_mm.utils import atomic_write_json, atomic_write_text
        self.data['total_seconds'] = self.elapsed()
        self.data['mfu'] = compute_mfu(self.data)
        atomic_write_json(osp.join(self.out_dir, 'benchmark_gpu.json'), self.data, indent=2)
        atomic_write_text(osp.join(self.out_dir, 'benchmark_gpu.md'), format_markdown(self.data))


# -- legs ----------------------------------------------------------------------------
def environment(settings: Dict[str, Any], peak_tflops: Optional[float]) -> Dict[str, Any]:
    import torch
    bm = _load_benchmark()
    cuda = settings['device'] == 'cuda'
    if cuda and not torch.cuda.is_available():
        raise RuntimeError('no CUDA device here; use --dry-run for the CPU check')
    name = torch.cuda.get_device_name(0) if cuda else (
        platform.processor() or platform.machine())
    table_peak = bm.gpu_bf16_peak_tflops(name) if cuda else None
    peak = peak_tflops if peak_tflops is not None else table_peak
    import mmcv
    import mmengine
    import mmpretrain
    import mmseg
    import open_clip

    from sera_mm.mmcv_lite import has_compiled_ops
    return OrderedDict(
        device=settings['device'], device_name=name, torch=torch.__version__,
        cuda=torch.version.cuda, python=platform.python_version(),
        stack=OrderedDict(mmcv=mmcv.__version__, mmcv_compiled_ops=has_compiled_ops(),
                          mmengine=mmengine.__version__, mmseg=mmseg.__version__,
                          mmpretrain=mmpretrain.__version__, open_clip=open_clip.__version__,
                          site=os.environ.get('SERA_DEVICE_SITE')),
        cpu_count=os.cpu_count(),
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        capability=list(torch.cuda.get_device_capability(0)) if cuda else None,
        memory_gib=(torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None),
        peak_tflops=peak,
        peak_source=('--peak-tflops' if peak_tflops is not None else
                     'benchmark.GPU_BF16_PEAK_TFLOPS' if table_peak is not None else None))


def generate_data(settings: Dict[str, Any], root: str) -> Dict[str, Any]:
    """The synthetic set, by the repository's generator (skipped when the
    same set is there already)."""
    lo, hi = settings['image_range']
    cmd = [sys.executable, 'tools/dataset_converters/generate_synthetic.py', '--out', root,
           '--num-train', str(settings['num_images']), '--num-val', '2', '--num-testA', '2',
           '--num-testB', '2', '--min-size', str(lo), '--max-size', str(hi)]
    proc = subprocess.run(cmd, cwd=REPO, env=_tool_env(settings), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        raise RuntimeError(f'generate_synthetic.py failed:\n{proc.stdout[-3000:]}')
    with open(osp.join(root, 'refsyn', 'instances.json')) as f:
        instances = json.load(f)
    return OrderedDict(root=root, command=' '.join(cmd[1:]), image_range=[lo, hi],
                       images=len(instances.get('images', [])))


def train_config(config: str, settings: Dict[str, Any], data_root: str, work_dir: str,
                 iters: int, batch: int, compile: bool = False) -> Dict[str, Any]:
    """Dumps a training config for one leg and returns its facts.

    The config's model and training recipe, with: the data on the synthetic
    set, batch ``batch``, ``iters`` iterations (IterBasedTrainLoop),
    constant learning rate, no validation or test, no checkpoints, logs
    every ``log_interval`` iterations (mean time over that window), an
    infinite sampler, one process (no SyncBN), pretrained references
    switched off.
    """
    from sera_mm.utils.config import leaf_datasets, load_config
    from sera_mm.utils.pretrained import disable_pretrained
    cfg = load_config(config)
    disabled = disable_pretrained(cfg.model)
    loader = cfg.train_dataloader
    for ds in leaf_datasets(loader.dataset):
        ds.update(data_root=data_root.rstrip('/') + '/', ann_file='refsyn/instances.json',
                  split_file='refsyn/refs(unc).p', data_prefix=dict(img_path='images/'),
                  split='train')
    loader.batch_size = batch
    loader.num_workers = settings['workers']
    loader.persistent_workers = settings['workers'] > 0
    loader.drop_last = True
    # no epoch boundaries: the workers prefetch throughout (a small set
    # would otherwise restart its epoch every few dozen iterations)
    loader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.param_scheduler = None
    interval = settings['log_interval']
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=interval,
                                    log_metric_by_epoch=False)
    cfg.default_hooks.checkpoint = None
    cfg.log_processor = dict(by_epoch=False, window_size=interval)
    cfg.sync_bn = None
    cfg.randomness = dict(seed=0)
    if compile:
        cfg.compile = True
    cfg.work_dir = work_dir
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'train_config.py')
    cfg.dump(path)
    return dict(path=path, disabled_pretrained=disabled, iters=iters, batch=batch)


def _tool_env(settings: Dict[str, Any]) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([REPO] + ([env['PYTHONPATH']]
                                                  if env.get('PYTHONPATH') else []))
    if settings['dry_run']:
        env['CUDA_VISIBLE_DEVICES'] = ''  # the dry run is the CPU's, on any machine
    return env


def read_scalars(work_dir: str) -> List[Dict[str, Any]]:
    """mmengine's logged training records (vis_data/scalars.json) of a run."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise_training(records: List[Dict[str, Any]], batch: int, skip_iters: int,
                       wall_s: float) -> Dict[str, Any]:
    """Throughput of the logged windows after ``skip_iters`` (warm-up,
    cudnn autotuning, compilation)."""
    timed = [r for r in records if 'time' in r and r.get('iter', r.get('step', 0)) > skip_iters]
    if not timed:
        raise ValueError(f'no logged iteration after the first {skip_iters}')
    step = statistics.median(r['time'] for r in timed)
    data = statistics.median(r.get('data_time', 0.0) for r in timed)
    memory = [r['memory'] for r in records if 'memory' in r]
    first = [r for r in records if 'time' in r]
    return OrderedDict(
        samples_per_s=batch / step, step_ms=1e3 * step, data_wait_share=data / step,
        data_time_ms=1e3 * data, windows=len(timed),
        iters=max(r.get('iter', 0) for r in records),
        first_window_ms=1e3 * first[0]['time'] if first else None,
        peak_memory_mib=max(memory) if memory else None, wall_s=wall_s,
        loss_last=next((r['loss'] for r in reversed(records) if 'loss' in r), None))


def run_training(name: str, config: str, settings: Dict[str, Any], data_root: str,
                 out_dir: str, iters: int, batch: int, compile: bool = False,
                 timeout: Optional[float] = None) -> Dict[str, Any]:
    """One training leg through tools/train.py.

    Past ``timeout`` seconds the run is stopped (its process group: the
    loader's workers too) and summarised from the windows it logged, marked
    ``stopped_at_budget``; without a logged window after the warm-up it
    fails.
    """
    work_dir = osp.join(out_dir, f'train_{name}_b{batch}' + ('_compile' if compile else ''))
    shutil.rmtree(work_dir, ignore_errors=True)  # this leg's earlier run, if any
    facts = train_config(config, settings, data_root, work_dir, iters, batch, compile)
    cmd = [sys.executable, 'tools/train.py', facts['path'], '--work-dir', work_dir]
    if settings['amp']:
        cmd += ['--amp', 'bfloat16']
    log_path = osp.join(work_dir, 'train_stdout.log')
    start = time.perf_counter()
    stopped = False
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_tool_env(settings), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stopped = True
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
    wall = time.perf_counter() - start
    if returncode and not stopped:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f'tools/train.py exited with {returncode} '
                           f'(log: {log_path}):\n{tail}')
    try:
        summary = summarise_training(read_scalars(work_dir), batch, settings['skip_iters'], wall)
    except (FileNotFoundError, ValueError) as exc:
        if stopped:
            raise RuntimeError(f'tools/train.py stopped at the budget after {wall:.0f} s, '
                               f'before a logged window past the warm-up ({exc}; log: '
                               f'{log_path})')
        raise
    summary.update(config=config, command=' '.join(cmd[1:]), amp='bf16' if settings['amp']
                   else None, batch=batch, compile=compile, stopped_at_budget=stopped,
                   disabled_pretrained=facts['disabled_pretrained'], log=log_path)
    return summary


def measure_loader(config: str, settings: Dict[str, Any], data_root: str,
                   out_dir: str) -> Dict[str, Any]:
    """Samples/s of the training data loader alone (its workers, no model)."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from sera_mm import register_all_modules
    from sera_mm.utils.config import load_config
    register_all_modules(init_default_scope=False)
    batch_size = settings['train_batches'][0]
    facts = train_config(config, settings, data_root, osp.join(out_dir, 'loader'),
                         settings['iters'], batch_size)
    cfg = load_config(facts['path'])
    init_default_scope(cfg.get('default_scope') or 'sera_mm')
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batches, warm = settings['loader_batches'], 2
    it = iter(loader)
    samples, start = 0, None
    for i in range(warm + batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        if i == warm - 1:
            start = time.perf_counter()
        elif i >= warm:
            samples += len(batch['inputs'])
    seconds = time.perf_counter() - start
    del it, loader
    return OrderedDict(config=config, workers=settings['workers'],
                       batch=batch_size, batches=batches, samples=samples,
                       seconds=seconds, samples_per_s=samples / seconds)


class BenchmarkModels:
    """The configs' models built once for the benchmark legs (and the profile)."""

    def __init__(self, settings: Dict[str, Any], detris_root: Optional[str]):
        self.bm = _load_benchmark()
        self.settings = settings
        self.detris_root = detris_root
        self.cases = []
        for name, config in settings['configs'].items():
            model, disabled = self.bm.build_benchmark_model(
                config, img_size=settings['img_size'], device=settings['device'])
            self.cases.append(self.bm.BenchmarkCase(name, model, disabled, config))

    def count_flops(self, batch: int) -> Dict[str, Any]:
        """FLOPs of one training step (and forward pass) per sample, counted
        once per model at ``batch`` (untimed: torch.utils.flop_counter)."""
        s, bm = self.settings, self.bm
        for case in self.cases:
            case.batch = bm.make_synthetic_batch(case.model, batch, s['img_size'], seed=0)
        report = bm.run_benchmark(self.cases, amp=s['bench_amp'], memory=False, flops=True,
                                  timing=False, log=lambda line: print(line, flush=True))
        out = OrderedDict(batch=batch, method=report['settings']['flops_method'])
        for r in report['results']:
            out[r['name']] = OrderedDict(
                train_flops_per_sample=r['flops']['train'] / batch,
                forward_flops_per_sample=r['flops']['forward'] / batch)
        for case in self.cases:
            case.model.zero_grad(set_to_none=True)
        self._free()
        return out

    def run(self, batch: int, peak_tflops: Optional[float]) -> Dict[str, Any]:
        s, bm = self.settings, self.bm
        cases = list(self.cases)
        for case in cases:
            case.batch = bm.make_synthetic_batch(case.model, batch, s['img_size'], seed=0)
        if self.detris_root:
            cases.insert(0, bm.build_detris_case(self.detris_root, batch_size=batch,
                                                 img_size=s['img_size'],
                                                 device=s['device']))
        report = bm.run_benchmark(
            cases, repeats=s['repeats'], warmup=s['warmup'], amp=s['bench_amp'],
            peak_flops=None if peak_tflops is None else peak_tflops * 1e12,
            log=lambda line: print(line, flush=True))
        print(bm.format_benchmark_table(report), flush=True)
        for case in cases:
            case.model.zero_grad(set_to_none=True)
        self._free()
        return report

    def profile(self, batch: int) -> Dict[str, Any]:
        s, bm = self.settings, self.bm
        out = OrderedDict()
        for case in self.cases:
            case.batch = bm.make_synthetic_batch(case.model, batch, s['img_size'], seed=0)
            rows = bm.profile_case(case, amp=s['bench_amp'], mode='train')
            print(bm.format_profile_table(case.name, rows), flush=True)
            out[case.name] = rows
            case.model.zero_grad(set_to_none=True)
        self._free()
        return out

    def close(self) -> None:
        self.cases = []
        self._free()

    @staticmethod
    def _free() -> None:
        import gc

        import torch
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def compute_mfu(data: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """MFU of the training legs: FLOPs per training sample (the ``flops``
    leg, else the benchmark leg at the same batch) x samples/s / peak.
    Adds ``flops_per_sample``, ``tflops_per_s`` and ``mfu`` to each leg;
    returns them by leg, or None before any FLOPs are known."""
    peak = data['environment'].get('peak_tflops')
    legs = list(data['train'].items()) + (
        [('sera (compile)', data['compile'])] if data.get('compile') else [])
    out = OrderedDict(peak_tflops=peak)
    for key, leg in legs:
        if not leg:
            continue
        name = key.split(' ')[0]
        flops, source = None, None
        if data.get('flops') and data['flops'].get(name):
            flops = data['flops'][name]['train_flops_per_sample']
            source = f"flops leg, batch {data['flops']['batch']}"
        else:
            bench = data['benchmark'].get(f"b{leg['batch']}")
            per_sample = {r['name']: r['throughput']['train_flops_per_sample']
                          for r in bench['results']} if bench else {}
            if per_sample.get(name) is not None:
                flops, source = per_sample[name], f"benchmark b{leg['batch']}"
        if flops is None:
            continue
        rate = flops * leg['samples_per_s']
        leg['flops_per_sample'] = flops
        leg['tflops_per_s'] = rate / 1e12
        leg['mfu'] = rate / (peak * 1e12) if peak else None
        out[key] = dict(tflops_per_s=rate / 1e12, mfu=leg['mfu'], flops_from=source)
    return out if len(out) > 1 else None


# -- Markdown ---------------------------------------------------------------------------
def _f(value: Any, fmt: str = '.1f', scale: float = 1.0) -> str:
    if value is None:
        return '-'
    return format(value * scale, fmt)


def format_markdown(data: Dict[str, Any]) -> str:
    env, s = data['environment'], data['settings']
    lines = ['# GPU benchmark (tools/analysis_tools/benchmark_gpu.sh)', '']
    lines.append(f"{env.get('device_name', '?')} ({env.get('device', '?')}), torch "
                 f"{env.get('torch', '?')}, CUDA {env.get('cuda')}, bf16 peak "
                 f"{_f(env.get('peak_tflops'), 'g')} TFLOP/s ({env.get('peak_source')}); "
                 f"{'DRY RUN (CPU, toy models)' if s['dry_run'] else 'ViT-B at 448 px'}; "
                 f"total {_f(data.get('total_seconds'), '.0f')} s "
                 f"(install and start-up before the legs: {_f(data.get('before_s'), '.0f')} s).")
    stack = env.get('stack')
    if stack:
        lines.append(f"mmcv {stack['mmcv']} ("
                     f"{'compiled ops' if stack['mmcv_compiled_ops'] else 'lite: no compiled ops'}"
                     f"), mmengine {stack['mmengine']}, mmseg {stack['mmseg']}, mmpretrain "
                     f"{stack['mmpretrain']}, open_clip {stack['open_clip']}.")
    lines += ['', '## Training (tools/train.py)', '',
              f"{s['iters']} iterations per leg, "
              f"{'bf16 AMP' if s['amp'] else 'fp32'}, {s['workers']} loader workers; "
              f"throughput after the first {s['skip_iters']} iterations; FLOPs per sample "
              f"from the flops leg", '',
              '| config | batch | samples/s | step ms | data wait % | peak memory MiB | '
              'GFLOP/sample | TFLOP/s | MFU % | wall s |',
              '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    legs = list(data['train'].items())
    if data.get('compile'):
        legs.append(('sera (compile)', data['compile']))
    for name, t in legs:
        if not t:
            continue
        lines.append(f"| {name.split(' ')[0]}"
                     f"{' (stopped at the budget)' if t.get('stopped_at_budget') else ''}"
                     f"{' (compile)' if t.get('compile') else ''} | {t['batch']} | "
                     f"{_f(t['samples_per_s'])} | {_f(t['step_ms'], '.0f')} | "
                     f"{_f(t['data_wait_share'], '.1f', 100)} | "
                     f"{_f(t['peak_memory_mib'], '.0f')} | "
                     f"{_f(t.get('flops_per_sample'), '.1f', 1e-9)} | "
                     f"{_f(t.get('tflops_per_s'), '.1f')} | {_f(t.get('mfu'), '.1f', 100)} | "
                     f"{_f(t['wall_s'], '.0f')} |")
    if data.get('compile_speedup') is not None:
        lines += ['', f"torch.compile (mmengine compile=True) on SERA: "
                  f"{data['compile_speedup']:.3f}x the eager samples/s"]
    if data['benchmark']:
        lines += ['', '## Forward+backward without the optimiser (benchmark.py)', '',
                  f"bf16 autocast {'on' if s['bench_amp'] else 'off'}, "
                  f"{s['repeats']} interleaved rounds after {s['warmup']} warm-up", '',
                  '| config | batch | fwd+bwd samples/s | fwd samples/s | x ref (fwd+bwd) | '
                  'peak fwd+bwd MiB | GFLOP/sample | MFU % |',
                  '|---|---:|---:|---:|---:|---:|---:|---:|']
        for key, report in data['benchmark'].items():
            for r in report['results']:
                thr = r['throughput']
                lines.append(
                    f"| {r['name']} | {report['settings']['batch_size']} | "
                    f"{_f(thr['train_samples_per_s'])} | {_f(thr['forward_samples_per_s'])} | "
                    f"{_f(r['train']['ratio'], '.3f')} | "
                    f"{_f(r['memory']['train_peak_bytes'], '.0f', 2**-20)} | "
                    f"{_f(thr['train_flops_per_sample'], '.1f', 1e-9)} | "
                    f"{_f(thr['train_mfu'], '.1f', 100)} |")
    if data['profile']:
        names = list(data['profile'])
        groups: List[str] = []
        for rows in data['profile'].values():  # union, each list's order kept
            for i, r in enumerate(rows):
                if r['group'] not in groups:
                    before = [x['group'] for x in rows[:i] if x['group'] in groups]
                    at = groups.index(before[-1]) + 1 if before else 0
                    groups.insert(at, r['group'])
        lines += ['', f"## Time split of one training step, batch {s['batch_sizes'][0]} "
                  f"({'GPU' if s['device'] == 'cuda' else 'CPU'} time, % of the step)", '',
                  '| group | ' + ' | '.join(names) + ' |',
                  '|---|' + '---:|' * len(names)]
        for g in groups:
            cells = []
            for n in names:
                row = next((r for r in data['profile'][n] if r['group'] == g), None)
                cells.append('-' if row is None else
                             (f"{row['total_ms']:.1f} ms" if g == 'total'
                              else f"{100 * row['share']:.1f}"))
            lines.append(f'| {g} | ' + ' | '.join(cells) + ' |')
    if data.get('loader'):
        ld = data['loader']
        lines += ['', '## Data loader against the training step', '',
                  f"loader alone: {_f(ld['samples_per_s'])} samples/s ({ld['workers']} "
                  f"workers, batch {ld['batch']}, {ld['batches']} batches)"]
        for name, t in data['train'].items():
            if t:
                lines.append(f"- {name}: step {_f(t['samples_per_s'])} samples/s, loader / "
                             f"step = {_f(ld['samples_per_s'] / t['samples_per_s'], '.2f')}, "
                             f"data wait {_f(t['data_wait_share'], '.1f', 100)} % of the step")
    lines += ['', '## Legs', '', '| leg | status | s | note |', '|---|---|---:|---|']
    for leg in data['legs']:
        note = (leg['error'] or '').splitlines()[0][:160] if leg['error'] else ''
        lines.append(f"| {leg['name']} | {leg['status']} | {_f(leg['seconds'], '.1f')} | "
                     f"{note} |")
    return '\n'.join(lines) + '\n'


# -- main --------------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    settings = settings_of(args)
    out_dir = osp.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    sys.path.insert(0, REPO)
    report = Report(out_dir, settings)
    data = report.data
    skip = settings['skip']

    env = report.leg('environment', lambda: environment(settings, args.peak_tflops))
    if env is None:
        report.save()
        return 1
    data['environment'] = env
    data_root = osp.join(out_dir, 'data')
    data['data'] = report.leg('data', lambda: generate_data(settings, data_root))
    if data['data'] is None:
        return 1
    configs = settings['configs']

    def budget_timeout() -> Optional[float]:
        left = report.left()
        return None if left == float('inf') else max(10.0, left - REPORT_RESERVE_S)

    if 'loader' not in skip:
        data['loader'] = report.leg('loader', lambda: measure_loader(
            configs['sera'], settings, data_root, out_dir))
    models = None
    if not {'flops', 'benchmark', 'profile'} <= set(skip):
        models = report.leg('models', lambda: BenchmarkModels(settings, args.detris_root),
                            needs_s=NEEDS_S['flops'])
        if models is not None and 'flops' not in skip:
            data['flops'] = report.leg('flops', lambda: models.count_flops(
                settings['train_batches'][0]))
    if 'train' not in skip:
        for batch in settings['train_batches']:
            for name in TRAIN_ORDER:
                data['train'][f'{name} b{batch}'] = report.leg(
                    f'train:{name}:b{batch}', lambda: run_training(
                        name, configs[name], settings, data_root, out_dir, settings['iters'],
                        batch, timeout=budget_timeout()),
                    needs_s=NEEDS_S['train'])
    if models is not None:
        peak = env.get('peak_tflops')
        if 'benchmark' not in skip:
            for batch in settings['batch_sizes']:
                result = report.leg(f'benchmark:b{batch}', lambda: models.run(batch, peak),
                                    needs_s=NEEDS_S['benchmark'])
                if result is not None:
                    data['benchmark'][f'b{batch}'] = result
        if 'profile' not in skip:
            data['profile'] = report.leg('profile', lambda: models.profile(
                settings['batch_sizes'][0]), needs_s=NEEDS_S['profile']) or {}
        models.close()
    if 'compile' not in skip:
        batch = settings['train_batches'][0]
        data['compile'] = report.leg('compile:sera', lambda: run_training(
            'sera', configs['sera'], settings, data_root, out_dir, settings['compile_iters'],
            batch, compile=True, timeout=budget_timeout()), needs_s=NEEDS_S['compile'])
        eager = data['train'].get(f'sera b{batch}')
        if data['compile'] and eager:
            data['compile_speedup'] = data['compile']['samples_per_s'] / eager['samples_per_s']
    report.save()
    print(format_markdown(data))
    print(f"wrote {osp.join(out_dir, 'benchmark_gpu.json')} and benchmark_gpu.md")
    required = {'environment', 'data'} | {
        f'train:{n}:b{b}' for n in TRAIN_ORDER for b in settings['train_batches']
        if 'train' not in skip}
    failed = [leg['name'] for leg in data['legs']
              if leg['status'] == 'failed' and (leg['name'] in required
                                                or leg['name'].startswith('benchmark'))]
    if failed:
        print(f'failed legs: {failed}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
