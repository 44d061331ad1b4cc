#!/usr/bin/env bash
# The embedded default job (`make demo`): generate the synthetic REFER set if
# absent, train the tiny config on the CPU (skipped when its final checkpoint
# exists), evaluate it, then evaluate it again with the sentences shuffled
# across samples (the control that shows the model reads the sentence).
# Override with CONFIG=... WORK_DIR=... DATA=...; FORMAT=grefcoco generates
# and uses the gRefCOCO-format set (`make demo-gres`).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/synthetic/sera-tiny_synthetic.py}
WORK_DIR=${WORK_DIR:-work_dirs/demo}
DATA=${DATA:-data/synthetic}
FORMAT=${FORMAT:-refer}
ANN_DIR=$([ "$FORMAT" = grefcoco ] && echo grefsyn || echo refsyn)

if [ ! -f "$DATA/$ANN_DIR/instances.json" ]; then
  python tools/dataset_converters/generate_synthetic.py --out "$DATA" --format "$FORMAT"
fi

ckpt=$(python - "$CONFIG" "$WORK_DIR" <<'PY'
import os.path as osp, sys
from mmengine.config import Config
cfg = Config.fromfile(sys.argv[1])
print(osp.join(sys.argv[2], f'epoch_{cfg.train_cfg.max_epochs}.pth'))
PY
)
if [ -f "$ckpt" ]; then
  echo "[demo] $ckpt exists: training skipped (delete $WORK_DIR to retrain)"
else
  python tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
fi

echo "[demo] evaluating $ckpt on the test split"
python tools/test.py "$CONFIG" "$ckpt" --work-dir "$WORK_DIR/test" --out "$WORK_DIR/test" --force
echo "[demo] control: the same checkpoint with the sentences shuffled across samples"
python tools/test.py "$CONFIG" "$ckpt" --work-dir "$WORK_DIR/test_shuffled" --shuffle-sentences
