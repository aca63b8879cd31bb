#!/usr/bin/env bash
# Unattended rest of a training session: stop the teacher at TEACHER_STOP (UTC HH:MM), export it,
# distil the pi-Flow student until DISTILL_UNTIL, exporting the newest student every EXPORT_EVERY
# seconds and once more at the end, so models/piflow-emoji always holds the most-trained model; then
# run the evaluation (models/eval/results) if it can finish before EVAL_DEADLINE.
#
#   setsid nohup models/recipe/pipeline.sh 19:30 20:32 > models/runs/pipeline.log 2>&1 &
#
# Resumable: rerunning it resumes the distillation from models/runs/student/checkpoints/last.pt.
set -u
cd "$(dirname "$0")/../.."
TEACHER_STOP=${1:-19:30}
DISTILL_UNTIL=${2:-20:32}
EVAL_DEADLINE=${3:-20:43}
EXPORT_EVERY=${EXPORT_EVERY:-900}
PY=${PIFLOW_PYTHON:-/usr/bin/python3}
RUNS=models/runs
# shellcheck source=models/recipe/pipeline-common.sh
. models/recipe/pipeline-common.sh  # the recipe's environment, log, stop_at, watch_distillation
export_model() {
  # copy the checkpoints first: the trainer replaces last.pt atomically, a copy is a stable snapshot
  cp "$RUNS/teacher/checkpoints/last.pt" "$RUNS/export-teacher.pt" || return 1
  local student_args=()
  if [ -f "$RUNS/student/checkpoints/last.pt" ]; then
    cp "$RUNS/student/checkpoints/last.pt" "$RUNS/export-student.pt" && student_args=(--student "$RUNS/export-student.pt")
  fi
  nice -n 5 "$PY" -m models.recipe.export --teacher "$RUNS/export-teacher.pt" "${student_args[@]}" 2>&1 |
    grep -v -i warning | tail -n 1
  log "exported (${student_args[*]:-teacher only})"
}

log "pid $$; teacher stops at $TEACHER_STOP, distillation until $DISTILL_UNTIL"
if running "$RUNS/teacher/pid"; then
  stop_at "$TEACHER_STOP" "$RUNS/teacher/pid" teacher
fi
tail -n 2 "$RUNS/teacher/train.log.jsonl"
export_model

nice -n 5 "$PY" -m models.recipe.distill --teacher "$RUNS/export-teacher.pt" --run "$RUNS/student" \
  --until "$DISTILL_UNTIL" ${DISTILL_ARGS:-} > "$RUNS/student-stdout.log" 2>&1 &
dpid=$!
echo "$dpid" > "$RUNS/student.pid"
log "distillation pid $dpid"
watch_distillation "$dpid" "$RUNS/student/checkpoints/last.pt"
tail -n 2 "$RUNS/student/train.log.jsonl"
export_model
left=$(( $(date -u -d "$EVAL_DEADLINE" +%s) - $(date -u +%s) ))
if [ "$left" -gt 120 ]; then
  log "evaluation (at most ${left}s)"
  timeout "$left" nice -n 5 "$PY" -m models.eval.evaluate --teacher "$RUNS/export-teacher.pt" \
    --student "$RUNS/export-student.pt" --prompts 32 --seeds 4 2>&1 | grep -v -i warning | tail -n 8
fi
log "done"
