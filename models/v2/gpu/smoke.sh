#!/usr/bin/env bash
# A smoke test of both trainers' GPU path on the device machine, on a synthetic data set of the real
# format (models/v2/synthetic.py): 5 teacher steps from scratch and 2 student steps from its snapshot,
# with --device cuda, then both snapshots loaded as the exports load them. ~1 minute, so a fault in the
# GPU path costs one short call, not the long one. train.sh --receive runs it once per machine.
#
#   bash models/v2/gpu/smoke.sh        # DEVICE=cpu runs it here
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PIFLOW_MODELS_PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONUNBUFFERED=1
"$PY" -m models.v2.synthetic "$tmp/data" --images 32 >/dev/null
"$PY" -m models.v2.train_teacher --device "$DEVICE" --run "$tmp/teacher" --data "$tmp/data" --minutes 5 \
  --batch 16 --channels 16 --max-steps 5 --log-every 1 --snapshot "$tmp/teacher.pt" | tail -n 2
"$PY" -m models.recipe.distill --v2 --device "$DEVICE" --teacher "$tmp/teacher.pt" --run "$tmp/student" \
  --data "$tmp/data" --minutes 5 --batch 4 --k 2 --total-substeps 16 --max-steps 2 --log-every 1 \
  --precision auto --snapshot "$tmp/student.pt" | tail -n 2
"$PY" - "$tmp" <<'PY'
import sys
from models.recipe.export import load_net
for name, step in (("teacher", 5), ("student", 2)):
    _, ck = load_net(f"{sys.argv[1]}/{name}.pt")
    assert ck["step"] == step, (name, ck["step"])
print("smoke: both trainers ran on the device and their snapshots load")
PY
