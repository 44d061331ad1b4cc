#!/usr/bin/env bash
# Builds, where PyPI is reachable, what a bare GPU machine needs to run
# tools/analysis_tools/benchmark_gpu.sh with no package index:
#   .device/wheels       the wheels of requirements/device-lock.txt for CPython
#                        3.12 on manylinux x86_64 (mmcv-lite, mmengine, mmseg,
#                        mmpretrain, open_clip and their pure-Python needs);
#                        it travels with a device command (carry=[".device/wheels"])
#                        and must fit, with the tracked files, in 64 MiB
#   .device/base-wheels  OpenCV and SciPy (requirements/device-base.txt), too
#                        large to travel; for a machine without them (the tests)
# and, with --torch-venv DIR, a Python 3.12 venv holding only torch 2.11.0 and
# torchvision 0.26.0, the GPU machines' versions (the tests here use it).
# Idempotent: returns in a second when the folders match the requirement files.
#
#   bash tools/analysis_tools/prepare_device.sh [--torch-venv .venv-torch2.11]
#
# On the GPU machine, benchmark_gpu.sh installs what is missing with
# tools/analysis_tools/device_bootstrap.py (docs/en/benchmarks.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
WHEELS=.device/wheels
BASE=.device/base-wheels
LIMIT_BYTES=$((64 * 1024 * 1024))
TORCH_VENV=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --torch-venv) TORCH_VENV=$2; shift 2 ;;
    *) echo "usage: $0 [--torch-venv DIR]" >&2; exit 2 ;;
  esac
done
log() { echo "[prepare_device] $*"; }
PY=${PYTHON:-python3}
# the machine's pip configuration (local indexes, version caps) ignored
PIP_NET=(--isolated --disable-pip-version-check)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] && PIP_NET+=(--cert /etc/ssl/certs/ca-certificates.crt)
TARGET_312=(--only-binary=:all: --no-deps --python-version 3.12 --implementation cp
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
            --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64)

# download DIR REQUIREMENTS: exactly the pins of REQUIREMENTS into DIR
download() {
  local dir=$1 req=$2 stamp="$1.stamp" want
  want=$(cat "$req" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
  if [[ -d "$dir" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
    log "$dir is up to date ($req)"
    return
  fi
  log "downloading $req into $dir (CPython 3.12, manylinux x86_64)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  "$PY" -m pip download "${PIP_NET[@]}" -q "${TARGET_312[@]}" -d "$dir.tmp" -r "$req"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  echo "$want" > "$stamp"
}

mkdir -p .device
download "$WHEELS" requirements/device-lock.txt
download "$BASE" requirements/device-base.txt

# what a device command carries: the tracked files and the wheel folder
folder=$(du -sb "$WHEELS" | cut -f1)
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
log "$WHEELS: $(ls "$WHEELS" | wc -l) wheels, $((folder / 1024 / 1024)) MiB; with the tracked" \
    "files ($((tracked / 1024 / 1024)) MiB): $(((folder + tracked) / 1024 / 1024)) of 64 MiB"
if (( folder + tracked > LIMIT_BYTES )); then
  log "ERROR: over the 64 MiB a device command carries; the largest wheels:" >&2
  ls -S -l "$WHEELS" | head -6 >&2
  exit 1
fi

if [[ -n "$TORCH_VENV" ]]; then
  want_torch="torch==2.11.0 torchvision==0.26.0"
  if [[ -x "$TORCH_VENV/bin/python" ]] && "$TORCH_VENV/bin/python" -c \
      "import torch, torchvision; assert torch.__version__.split('+')[0] == '2.11.0' \
       and torchvision.__version__.split('+')[0] == '0.26.0'" 2>/dev/null; then
    log "$TORCH_VENV holds $want_torch"
  else
    PY312=${PYTHON312:-}
    if [[ -z "$PY312" ]]; then
      if python3.12 -c '' 2>/dev/null; then
        PY312=python3.12
      elif command -v pyenv >/dev/null; then
        v=$(pyenv versions --bare | grep -E '^3\.12(\.[0-9]+)?$' | sort -V | tail -1 || true)
        [[ -n "$v" ]] && PY312="$(pyenv root)/versions/$v/bin/python3.12"
      fi
    fi
    [[ -n "$PY312" ]] || { log "ERROR: no Python 3.12 found (PATH or pyenv); install it" \
      "(pyenv install 3.12, or apt-get install python3.12-venv) or set PYTHON312" >&2; exit 1; }
    log "creating $TORCH_VENV with $PY312 and $want_torch (a CUDA build, several GB)"
    [[ -x "$TORCH_VENV/bin/python" ]] || "$PY312" -m venv "$TORCH_VENV"
    # shellcheck disable=SC2086
    "$TORCH_VENV/bin/python" -m pip install "${PIP_NET[@]}" -q $want_torch
  fi
fi
log "done"
