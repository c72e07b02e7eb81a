#!/usr/bin/env bash
# Sets up .venv with the pinned stack.
#   scripts/install.sh core   torch + torchvision (together) and the zoo in editable mode: timm, mmengine,
#                             albumentations, ... Enough for classification (`make demo`), about 2 min.
#   scripts/install.sh        everything (`make test`): core, then mmcv 2.1.0 built from its sdist with
#                             the C++20 fix, mmdet, mmseg, and the wsi / dev extras.
# The mmcv wheel is cached in $ZOO_WHEEL_CACHE, so only the first full install on a machine compiles it.
# Idempotent: re-running only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-full}
[[ $MODE == core || $MODE == full ]] || { echo "usage: scripts/install.sh [core|full]" >&2; exit 2; }
VENV=${ZOO_VENV:-$ROOT/.venv}
CACHE=${ZOO_WHEEL_CACHE:-$HOME/.cache/attention-zoo/wheels}
PY=$VENV/bin/python
PIP="$VENV/bin/pip --disable-pip-version-check -q"
start=$(date +%s)
log() { echo "[install $(($(date +%s) - start))s] $*"; }

# Fast path: everything already installed for this exact dependency set (a full install covers core).
want=$(cat pyproject.toml scripts/install.sh constraints.txt | sha256sum | cut -c1-16)
up_to_date() { [[ -f $VENV/.zoo-installed-$1 && "$(cat "$VENV/.zoo-installed-$1")" == "$want" ]]; }
if { up_to_date full || { [[ $MODE == core ]] && up_to_date core; }; } && "$PY" -c "import zoo" 2>/dev/null; then
  log "up to date ($VENV, $MODE)"
  exit 0
fi

if [[ ! -x $PY ]]; then
  # torch 2.14.1 on x86_64 is the CUDA build: the venv takes about 6.5 GB. Say so before pip half-fills the disk.
  free_gb=$(df -Pk "$(dirname "$VENV")" | awk 'NR==2 {print int($4 / 1048576)}')
  if (( free_gb < 8 )); then
    echo "install: only ${free_gb} GB free under $(dirname "$VENV"); the venv needs about 7 GB (set ZOO_VENV elsewhere or free space)" >&2
    exit 1
  fi
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
# pip < 26.2 applies constraints inside build environments too; setuptools < 81 keeps
# pkg_resources, which mmcv's setup.py and mmengine's Config need.
$PIP install -U "pip<26.2" "setuptools<81" wheel ninja
log "torch 2.14.1 + torchvision 0.29.1 (one command, so pip cannot split them)"
$PIP install -c constraints.txt torch==2.14.1 torchvision==0.29.1
# mmcv's setup.py picks the OpenCV flavour already installed: make it the headless one that
# albumentations needs, so the two never fight over cv2.
$PIP install -c constraints.txt opencv-python-headless numpy
log "attention-zoo (core)"
$PIP install -c constraints.txt -e .

if [[ $MODE == full ]]; then
  mkdir -p "$CACHE"
  wheel=$(ls "$CACHE"/mmcv-2.1.0-cp*-linux_*.whl 2>/dev/null | head -n1 || true)
  if [[ -z $wheel ]]; then
    log "building mmcv 2.1.0 from its sdist (about 15 min on 2 cores; cached afterwards in $CACHE)"
    work=$(mktemp -d)
    $PIP install -c constraints.txt addict mmengine==0.10.7 packaging Pillow pyyaml yapf
    $PIP download --no-deps --no-binary :all: --no-build-isolation -d "$work" mmcv==2.1.0
    tar -xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
    # torch 2.14's headers require C++20; mmcv hard-codes -std=c++17 after torch's own flags.
    sed -i 's/-std=c++17/-std=c++20/g' "$work"/mmcv-2.1.0/setup.py
    grep -q -- '-std=c++20' "$work"/mmcv-2.1.0/setup.py || { echo "install: could not patch mmcv setup.py" >&2; exit 1; }
    (cd "$work"/mmcv-2.1.0 && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "$VENV"/bin/pip wheel --no-build-isolation --no-deps -c "$ROOT"/constraints.txt -w "$work"/dist . )
    # copy, then rename: a build killed half-way never leaves a truncated wheel in the cache
    cp "$work"/dist/mmcv-2.1.0-*.whl "$CACHE"/.partial.whl
    mv "$CACHE"/.partial.whl "$CACHE/$(basename "$work"/dist/mmcv-2.1.0-*.whl)"
    rm -rf "$work"
    wheel=$(ls "$CACHE"/mmcv-2.1.0-cp*-linux_*.whl | head -n1)
  fi
  log "mmcv wheel: $wheel"
  $PIP install -c constraints.txt "$wheel"
  log "attention-zoo with extras mm, wsi, export, dev"
  $PIP install -c constraints.txt -e ".[mm,wsi,export,dev]"
fi

# The pins must have survived every later resolver run.
ZOO_INSTALL_MODE=$MODE "$PY" - <<'PYEOF'
import os
import torch, torchvision
assert torch.__version__.split('+')[0] == '2.14.1', f'torch is {torch.__version__}, expected 2.14.1'
assert torchvision.__version__.split('+')[0] == '0.29.1', f'torchvision is {torchvision.__version__}'
import timm, mmengine
import zoo  # noqa: F401
line = f'torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, mmengine {mmengine.__version__}'
if os.environ['ZOO_INSTALL_MODE'] == 'full':
    import mmcv.ops, mmdet.models, mmseg.models  # noqa: F401  (compiled mmcv._ext must import)
    line += f', mmcv {mmcv.__version__}: OpenMMLab imports ok'
print(line)
PYEOF
echo "$want" > "$VENV/.zoo-installed-$MODE"
log "done ($MODE)"
