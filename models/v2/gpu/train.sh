#!/usr/bin/env bash
# On the device machine (python3 there holds CUDA torch): join the staged data set (models/v2/gpu/stage.sh),
# train the v2 teacher on the GPU for TEACHER_MINUTES from the committed snapshot, then (STUDENT_MINUTES
# > 0) distil the pi-ID 4-NFE GM student from the teacher just trained. The fp16 EMA snapshots
# (teacher.pt, student.pt, ~10 MB each) and the loss logs come back in $OUT, refreshed at every
# checkpoint (each minute), so a call cut off at its limit still returns the last ones. Keep the sum of
# the minutes ~1.5 under the call's timeout_s / 60 (start-up, data, final checkpoints).
#
#   bash models/v2/gpu/train.sh --receive          # a middle call: check the parts so far, and run
#                                                  # models/v2/gpu/smoke.sh once per machine
#   bash models/v2/gpu/train.sh 6 2.5              # the last call: 6 min teacher, 2.5 min student
#
# Back here: cp <files_at>/teacher.pt models/v2/snapshots/teacher.pt (then resume-teacher.sh continues on
# the CPU), and export with `python -m models.v2.export --teacher <teacher.pt> --student <student.pt>`.
# Environment: BATCH (teacher, default 512), LR (teacher, default 5e-4), STUDENT_BATCH (default 128),
# DEVICE (default cuda; cpu runs the same script here as a smoke test).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PIFLOW_MODELS_PYTHON:-python3}
DATA=${DATA:-models/data/v2}
OUT=${OUT:-/tmp/piflow-out}
mkdir -p "$OUT"

manifest=$(ls .stage/*/MANIFEST 2>/dev/null | head -1 || true)
[ -n "$manifest" ] || { echo "train: no .stage/*/MANIFEST here (carry .stage/K)" >&2; exit 1; }
n=$(awk '$1 == "parts" {print $2}' "$manifest")
missing=0
while read -r _ name sum; do
  file=$(ls .stage/*/"$name" 2>/dev/null | head -1 || true)
  if [ -z "$file" ]; then echo "train: part $name not here yet"; missing=$((missing + 1)); continue; fi
  [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$sum" ] || { echo "train: part $name damaged" >&2; exit 1; }
done < <(awk '$1 == "part"' "$manifest")
echo "train: $((n - missing)) of $n parts here"
if [ "${1:-}" = "--receive" ]; then
  # once per machine, while the parts arrive: the GPU path of both trainers on synthetic data (~1 min)
  if [ ! -f /tmp/piflow-gpu-smoke-ok ]; then
    bash models/v2/gpu/smoke.sh || { echo "train: the GPU smoke test failed: fix it before the long call" >&2; exit 1; }
    touch /tmp/piflow-gpu-smoke-ok
  fi
  exit 0
fi
[ "$missing" -eq 0 ] || { echo "train: $missing parts missing: the machine went cold between calls; stage again" >&2; exit 1; }

TEACHER_MINUTES=${1:?usage: train.sh TEACHER_MINUTES [STUDENT_MINUTES] | --receive}
STUDENT_MINUTES=${2:-0}
mkdir -p "$DATA"
cat $(awk '$1 == "part" {print $2}' "$manifest" | while read -r name; do ls .stage/*/"$name"; done) | tar -xf - -C "$DATA"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
export PYTHONUNBUFFERED=1
status=0
"$PY" -m models.v2.train_teacher --device "${DEVICE:-cuda}" --run /tmp/piflow-v2-teacher --data "$DATA" \
  --minutes "$TEACHER_MINUTES" --batch "${BATCH:-512}" --lr "${LR:-5e-4}" --threads 8 \
  --resume-snapshot models/v2/snapshots/teacher.pt --snapshot "$OUT/teacher.pt" \
  --ckpt-minutes 1 --snapshot-every 1 --log-every 200 || status=$?
cp /tmp/piflow-v2-teacher/train.log.jsonl "$OUT/teacher.log.jsonl" 2>/dev/null || true
if [ "$status" -eq 0 ] && [ "$STUDENT_MINUTES" != 0 ]; then
  "$PY" -m models.recipe.distill --v2 --device "${DEVICE:-cuda}" --teacher "$OUT/teacher.pt" --run /tmp/piflow-v2-student \
    --data "$DATA" --minutes "$STUDENT_MINUTES" --batch "${STUDENT_BATCH:-128}" --threads 8 --precision auto \
    --snapshot "$OUT/student.pt" --ckpt-minutes 1 --log-every 50 || status=$?
  cp /tmp/piflow-v2-student/train.log.jsonl "$OUT/student.log.jsonl" 2>/dev/null || true
fi
tail -n 2 "$OUT"/*.log.jsonl 2>/dev/null || true
exit "$status"
