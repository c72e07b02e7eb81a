#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NUM_PROCS [train.py options...]
# On CPU the processes use the gloo backend (tools/train.py switches to it when there is no GPU).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG NUM_PROCS [tools/train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
DIR=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
# PORT=N pins the rendezvous port; by default torchrun's --standalone mode takes a free one, so two jobs
# on one machine never race for the same port.
if [[ -n ${PORT:-} ]]; then RDZV=(--master_port="$PORT"); else RDZV=(--standalone); fi
exec "$PYTHON" -m torch.distributed.run "${RDZV[@]}" --nproc_per_node="$NPROC" \
  "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
