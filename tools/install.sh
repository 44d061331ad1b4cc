#!/usr/bin/env bash
# Builds the pinned sera_mm stack in a virtual environment (default: .venv in
# the repository root, override with SERA_VENV=...). Idempotent: when the
# environment already matches the requirement files it returns in seconds.
#
# Order matters (docs/en/environment.md): torch and torchvision come together from the
# package index with the machine's pip configuration ignored (a local CPU-only
# torch wheel would otherwise win and break torchvision); mmcv 2.1.0 is then
# compiled with ops against that torch; every later call is constrained so
# nothing moves them again.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SERA_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
STAMP="$VENV/.sera_mm-stack"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
want=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VENV/bin/python" -c "import mmcv.ops, mmseg.models, sera_mm" 2>/dev/null; then
  echo "[install] environment $VENV is up to date"
  exit 0
fi

log() { echo "[install] $(date +%H:%M:%S) $*"; }
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

if ! "$PY" -c "import torch, torchvision, torchvision.ops; assert torch.__version__.startswith('2.13.0') and '+cpu' not in torch.__version__" 2>/dev/null; then
  log "installing torch 2.13.0 + torchvision 0.28.0 from the package index (machine pip config ignored)"
  "${PIP[@]}" install --isolated --cert /etc/ssl/certs/ca-certificates.crt -q \
    torch==2.13.0 torchvision==0.28.0 "setuptools>=77.0.3,<81" wheel ninja
fi
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=77.0.3,<81" wheel ninja

if ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
  log "building mmcv 2.1.0 with ops (about 10 minutes on 2 cores)"
  MMCV_WITH_OPS=1 FORCE_CUDA=0 "${PIP[@]}" install -q --no-build-isolation -c "$CONSTRAINTS" mmcv==2.1.0 || true
  if ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
    log "cached mmcv wheel does not match this torch; rebuilding without the cache"
    MMCV_WITH_OPS=1 FORCE_CUDA=0 "${PIP[@]}" install -q --no-build-isolation --no-cache-dir \
      --force-reinstall --no-deps mmcv==2.1.0
  fi
  "$PY" -c "import mmcv.ops" || { echo "[install] ERROR: import mmcv.ops fails after building mmcv" >&2; exit 1; }
fi

log "installing OpenMMLab packages, runtime and test requirements"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r "$ROOT/requirements/mminstall.txt" \
  -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
log "installing sera_mm (editable)"
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"
"$PY" - <<'PY'
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmseg, mmpretrain, open_clip, sera_mm
print('[install] torch', torch.__version__, '| torchvision', torchvision.__version__,
      '| mmcv', mmcv.__version__, '| mmengine', mmengine.__version__,
      '| mmseg', mmseg.__version__, '| mmpretrain', mmpretrain.__version__,
      '| open_clip', open_clip.__version__, '| sera_mm', sera_mm.__version__)
PY
echo "$want" > "$STAMP"
log "done: activate with 'source ${VENV#$ROOT/}/bin/activate'"
