#!/usr/bin/env bash
# Measures a CUDA GPU in one command (about 6 minutes on one H100/H200):
# synthetic data at 448 px, a few hundred bf16 training iterations of DETRIS-B
# and SERA-B through tools/train.py, the benchmark tool at batch 16 and 32
# (samples/s, peak memory, MFU), the per-module time split, the data loader
# against the step, and a torch.compile leg. Writes
# <out-dir>/benchmark_gpu.{json,md}. See docs/en/benchmarks.md.
#
#   bash tools/analysis_tools/benchmark_gpu.sh [--out-dir DIR] [--peak-tflops X]
#   bash tools/analysis_tools/benchmark_gpu.sh --dry-run   # CPU, toy size, ~1 min
#
# All options: python tools/analysis_tools/benchmark_gpu.py --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
exec "$PYTHON" tools/analysis_tools/benchmark_gpu.py "$@"
