#!/usr/bin/env bash
# On the device machine (python3 there holds CUDA torch): join the staged data set (models/v2/gpu/stage.sh)
# and train the v2 teacher on the GPU for MINUTES from the committed snapshot; the EMA snapshot (fp16,
# 10 MB) and the loss log come back in $OUT, refreshed at every checkpoint (each minute), so a call cut
# off at its limit still returns the last one.
#
#   bash models/v2/gpu/train-teacher.sh --receive      # a middle call: check the parts so far, train nothing
#   bash models/v2/gpu/train-teacher.sh 7 [train_teacher flags]   # the last call
#
# Back here: cp <files_at>/teacher.pt models/v2/snapshots/teacher.pt, then resume on the CPU
# (models/v2/resume-teacher.sh) or distil. Environment: BATCH (default 512), LR (default 5e-4).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PIFLOW_MODELS_PYTHON:-python3}
DATA=${DATA:-models/data/v2}
OUT=${OUT:-/tmp/piflow-out}
mkdir -p "$OUT"

manifest=$(ls .stage/*/MANIFEST 2>/dev/null | head -1 || true)
[ -n "$manifest" ] || { echo "train-teacher: no .stage/*/MANIFEST here (carry .stage/K)" >&2; exit 1; }
n=$(awk '$1 == "parts" {print $2}' "$manifest")
missing=0
while read -r _ name sum; do
  file=$(ls .stage/*/"$name" 2>/dev/null | head -1 || true)
  if [ -z "$file" ]; then echo "train-teacher: part $name not here yet"; missing=$((missing + 1)); continue; fi
  [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$sum" ] || { echo "train-teacher: part $name damaged" >&2; exit 1; }
done < <(awk '$1 == "part"' "$manifest")
echo "train-teacher: $((n - missing)) of $n parts here"
if [ "${1:-}" = "--receive" ]; then exit 0; fi
[ "$missing" -eq 0 ] || { echo "train-teacher: $missing parts missing: the machine went cold between calls; stage again" >&2; exit 1; }

MINUTES=${1:?usage: train-teacher.sh MINUTES [train_teacher flags] | --receive}
shift
mkdir -p "$DATA"
cat $(awk '$1 == "part" {print $2}' "$manifest" | while read -r name; do ls .stage/*/"$name"; done) | tar -xf - -C "$DATA"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
run=/tmp/piflow-v2-teacher
PYTHONUNBUFFERED=1 "$PY" -m models.v2.train_teacher --device cuda --run "$run" --data "$DATA" \
  --minutes "$MINUTES" --batch "${BATCH:-512}" --lr "${LR:-5e-4}" --threads 8 \
  --resume-snapshot models/v2/snapshots/teacher.pt --snapshot "$OUT/teacher.pt" \
  --ckpt-minutes 1 --snapshot-every 1 --log-every 200 "$@" || status=$?
cp "$run/train.log.jsonl" "$OUT/" 2>/dev/null || true
tail -n 3 "$OUT/train.log.jsonl" 2>/dev/null || true
exit "${status:-0}"
