#!/usr/bin/env bash
# Default model v2, unattended, from a teacher run to a served, evaluated model (models/recipe/pipeline.sh
# for v2): the teacher trains until TEACHER_STOP (UTC HH:MM; or stops there if it already runs in the
# background with its pid in models/runs/v2-teacher/pid), then the pi-ID 4-NFE GM (K=8) student distils
# from the teacher until DISTILL_UNTIL, exported (with the onnxruntime parity check) to MODEL_OUT every
# EXPORT_EVERY seconds and at the end, then the independent evaluation (models/eval/independent.py) runs
# if it can finish before EVAL_DEADLINE.
#
#   setsid nohup models/v2/pipeline.sh 18:00 20:30 21:30 > models/runs/v2-pipeline.log 2>&1 &
#
# Environment (all optional):
#   TEACHER_ARGS   extra train_teacher flags, e.g. "--max-steps 60000" (stop at a step) or
#                  "--resume-snapshot models/v2/snapshots/teacher.pt" (start on a machine without last.pt)
#   DISTILL_ARGS   extra distill flags (e.g. "--batch 32" on a bigger machine); after the pipeline's own
#                  "--precision auto --threads 1 --workers 2" (bf16 networks where the CPU has AMX: ~1.2-1.4x
#                  per step here, losses within ~1 % of fp32 on the same batches; two data-parallel
#                  processes, models/recipe/workers.py), so "--precision fp32" or "--workers 1" overrides it
#   The teacher trains with "--workers 2 --batch 64" (1.72x the images/s of one process at batch 32) before
#   TEACHER_ARGS.
#   EVAL_ARGS      extra independent-evaluation flags (e.g. "--limit 256" for a quick table)
#   DATA           the v2 data directory (default models/data/v2: models.v2.prepare + `models.v2.text embed`)
#   MODEL_OUT      default models/piflow-emoji-v2;  FIXTURES  default models/v2/fixtures (parity fixtures)
#   RUNS           default models/runs (runs, logs, the exported checkpoints);  EXPORT_EVERY  default 900 (s)
#   PIFLOW_MODELS_PYTHON  default .toolchain/torch-py/bin/python (bash scripts/setup.sh --models)
#
# Resumable: rerunning resumes the teacher from models/runs/v2-teacher/checkpoints/last.pt and the student
# from models/runs/v2-student/checkpoints/last.pt. The student keeps the teacher it started from
# (models/runs/v2-export-teacher.pt); to distil from a newer teacher, move models/runs/v2-student away.
set -u
cd "$(dirname "$0")/../.."
TEACHER_STOP=${1:?usage: models/v2/pipeline.sh TEACHER_STOP DISTILL_UNTIL [EVAL_DEADLINE] (UTC HH:MM)}
DISTILL_UNTIL=${2:?usage: models/v2/pipeline.sh TEACHER_STOP DISTILL_UNTIL [EVAL_DEADLINE] (UTC HH:MM)}
EVAL_DEADLINE=${3:-$DISTILL_UNTIL}
EXPORT_EVERY=${EXPORT_EVERY:-900}
PY=${PIFLOW_MODELS_PYTHON:-.toolchain/torch-py/bin/python}
DATA=${DATA:-models/data/v2}
MODEL_OUT=${MODEL_OUT:-models/piflow-emoji-v2}
FIXTURES=${FIXTURES:-models/v2/fixtures}
RUNS=${RUNS:-models/runs}
TEACHER_RUN=$RUNS/v2-teacher
STUDENT_RUN=$RUNS/v2-student
mkdir -p "$RUNS"
PIPELINE_NAME="v2 pipeline"
# shellcheck source=models/recipe/pipeline-common.sh
. models/recipe/pipeline-common.sh  # the recipe's environment, log, stop_at, watch_distillation
export_model() {
  # a copy of the student checkpoint: the trainer replaces last.pt atomically, the copy stays stable
  cp "$STUDENT_RUN/checkpoints/last.pt" "$RUNS/v2-export-student.pt" || return 1
  local rc=0
  nice -n 19 "$PY" -m models.v2.export --teacher "$RUNS/v2-export-teacher.pt" \
    --student "$RUNS/v2-export-student.pt" --out "$MODEL_OUT" --fixtures "$FIXTURES" \
    > "$RUNS/v2-export.log" 2>&1 || rc=$?
  grep -v -i warning "$RUNS/v2-export.log" | tail -n 2
  if [ "$rc" -eq 0 ]; then
    log "exported $MODEL_OUT, parity checked ($(grep -o '"studentSteps": [0-9]*' "$MODEL_OUT/manifest.json"))"
  else
    log "EXPORT OR PARITY FAILED (exit $rc, $RUNS/v2-export.log)"
  fi
}

log "pid $$; teacher until $TEACHER_STOP, distillation until $DISTILL_UNTIL, evaluation by $EVAL_DEADLINE"
if running "$TEACHER_RUN/pid"; then
  stop_at "$TEACHER_STOP" "$TEACHER_RUN/pid" "the background teacher (it writes its checkpoint and snapshot)"
elif [ "$(date -u +%s)" -lt "$(date -u -d "$TEACHER_STOP" +%s)" ]; then
  log "teacher until $TEACHER_STOP ${TEACHER_ARGS:-}"
  # shellcheck disable=SC2086  # TEACHER_ARGS is a list of flags
  nice -n 19 "$PY" -m models.v2.train_teacher --run "$TEACHER_RUN" --data "$DATA" --until "$TEACHER_STOP" \
    --workers 2 --batch 64 ${TEACHER_ARGS:-} > "$RUNS/v2-teacher-stdout.log" 2>&1
  log "teacher exited with $?"
fi
tail -n 2 "$TEACHER_RUN/train.log.jsonl" 2>/dev/null

if [ ! -f "$STUDENT_RUN/checkpoints/last.pt" ] || [ ! -f "$RUNS/v2-export-teacher.pt" ]; then
  # the newest teacher weights: the run's checkpoint (EMA, fp32), else the committed snapshot
  teacher=$TEACHER_RUN/checkpoints/last.pt
  [ -f "$teacher" ] || teacher=models/v2/snapshots/teacher.pt
  cp "$teacher" "$RUNS/v2-export-teacher.pt" || exit 1
  log "distilling from $teacher"
fi

# shellcheck disable=SC2086  # DISTILL_ARGS is a list of flags
nice -n 19 "$PY" -m models.recipe.distill --v2 --teacher "$RUNS/v2-export-teacher.pt" --run "$STUDENT_RUN" \
  --data "$DATA" --until "$DISTILL_UNTIL" --precision auto --threads 1 --workers 2 ${DISTILL_ARGS:-} \
  > "$RUNS/v2-student-stdout.log" 2>&1 &
dpid=$!
echo "$dpid" > "$STUDENT_RUN.pid"
log "distillation pid $dpid"
watch_distillation "$dpid" "$STUDENT_RUN/checkpoints/last.pt"
tail -n 2 "$STUDENT_RUN/train.log.jsonl"
[ -f "$STUDENT_RUN/checkpoints/last.pt" ] && export_model

left=$(($(date -u -d "$EVAL_DEADLINE" +%s) - $(date -u +%s)))
if [ "$left" -gt 300 ] && [ -f "$MODEL_OUT/manifest.json" ]; then
  log "independent evaluation (at most ${left}s) ${EVAL_ARGS:-}"
  # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags
  timeout "$left" nice -n 19 "$PY" -m models.eval.independent --model "$MODEL_OUT" ${EVAL_ARGS:-} 2>&1 |
    grep -v -i warning | tail -n 8
fi
log "done"
