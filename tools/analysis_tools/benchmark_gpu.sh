#!/usr/bin/env bash
# Measures a CUDA GPU in one command, sized to a 15-minute loan (at most 8
# minutes on one H100, from here): synthetic data at 448 px, bf16 training
# iterations of SERA-B and DETRIS-B through tools/train.py at batch 16 and 32
# (samples/s, peak memory, MFU), the data loader against the step, then, as
# the time allows, the benchmark tool's forward+backward legs, the
# per-module time split and a torch.compile leg. Writes
# <out-dir>/benchmark_gpu.{json,md} after every leg. See docs/en/benchmarks.md.
#
# Without the project's .venv (a bare GPU machine: Python, torch and
# torchvision, no package index), it first installs what is missing from the
# carried wheels of .device/wheels (built here by prepare_device.sh) into a
# temporary folder, with pip --no-index --target (device_bootstrap.py), and
# puts that folder on PYTHONPATH. From a device command:
#   bash tools/analysis_tools/prepare_device.sh            # here, once
#   run(command="bash tools/analysis_tools/benchmark_gpu.sh --out-dir /tmp/bgpu 2>&1
#       | tee $OUT/log.txt; cp /tmp/bgpu/benchmark_gpu.json /tmp/bgpu/benchmark_gpu.md $OUT/",
#       carry=[".device/wheels"], timeout_s=540)   # (one line; $OUT brings back 8 files)
#
#   bash tools/analysis_tools/benchmark_gpu.sh [--out-dir DIR] [--peak-tflops X]
#   bash tools/analysis_tools/benchmark_gpu.sh --dry-run   # CPU, toy size
#
# PYTHON picks the interpreter (default .venv/bin/python, else python3);
# SERA_DEVICE_SITE the install folder (default $TMPDIR/sera_mm_site).
# All options: python tools/analysis_tools/benchmark_gpu.py --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# the time budget (--budget-s) counts from here, the install included
export SERA_BENCH_T0=${SERA_BENCH_T0:-$(date +%s.%N)}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ "$PYTHON" != .venv/bin/python ]]; then
    export SERA_DEVICE_SITE=${SERA_DEVICE_SITE:-${TMPDIR:-/tmp}/sera_mm_site}
    export PYTHONPATH="$SERA_DEVICE_SITE${PYTHONPATH:+:$PYTHONPATH}"
    "$PYTHON" tools/analysis_tools/device_bootstrap.py --target "$SERA_DEVICE_SITE" --check
fi
exec "$PYTHON" tools/analysis_tools/benchmark_gpu.py "$@"
