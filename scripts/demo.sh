#!/usr/bin/env bash
# The demo: train MambaOut-Femto on the embedded digits with tools/train.py, then evaluate the
# exported model.safetensors loaded back through timm.create_model(pretrained=True, file=...),
# and check that both accuracies agree and reach 95%.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${ZOO_VENV:-.venv}/bin/python
CFG=configs/classification/mambaout/mambaout_femto_digits.py
WORK=${WORK:-work_dirs/demo}
start=$(date +%s)
rm -rf "$WORK"
$PY tools/train.py "$CFG" --work-dir "$WORK"
$PY tools/test.py "$CFG" "$WORK/model.safetensors" --work-dir "$WORK/test"
$PY - "$WORK" "$start" <<'PYEOF'
import json, sys, time
work, start = sys.argv[1], float(sys.argv[2])
curves = json.load(open(f'{work}/curves.json'))
best = max(v for _, v in curves['metrics']['accuracy/top1'])
reloaded = json.load(open(f'{work}/test/metrics.json'))['accuracy/top1']
ok = abs(best - reloaded) < 1e-6 and reloaded >= 95.0
print(f'demo: best val top-1 {best:.2f}% during training, {reloaded:.2f}% after reloading '
      f'{work}/model.safetensors through timm.create_model; curve {work}/curves.png; '
      f'{time.time() - start:.0f}s total -> {"OK" if ok else "FAILED"}')
sys.exit(0 if ok else 1)
PYEOF
