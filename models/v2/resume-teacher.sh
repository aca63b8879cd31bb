#!/usr/bin/env bash
# Resume the v2 teacher in the background until UNTIL (UTC HH:MM), on this machine or a fresh one that
# ran `bash scripts/setup.sh --models`: rebuilds the git-ignored data set when it is missing
# (models.v2.prepare ~20 s, then the MiniLM caption embeddings ~3 min), then trains from
# models/runs/v2-teacher/checkpoints/last.pt, or from the committed snapshot when there is none, with two
# data-parallel bf16 workers at batch 64 (models/README.md), `nice -n 19`, detached from the shell.
#
#   bash models/v2/resume-teacher.sh 23:30 [extra train_teacher flags]
#
# Its pid goes to models/runs/v2-teacher/pid (models/v2/pipeline.sh stops it there at its TEACHER_STOP;
# `kill $(cat models/runs/v2-teacher/pid)` stops it by hand: the trainer writes its checkpoint and
# snapshot first). Output: models/runs/v2-teacher.out; loss: models/runs/v2-teacher/train.log.jsonl.
# Environment: RUN (default models/runs/v2-teacher), DATA (default models/data/v2), PIFLOW_MODELS_PYTHON.
set -eu
cd "$(dirname "$0")/../.."
UNTIL=${1:?usage: models/v2/resume-teacher.sh UNTIL (UTC HH:MM) [train_teacher flags]}
shift
PY=${PIFLOW_MODELS_PYTHON:-.toolchain/torch-py/bin/python}
DATA=${DATA:-models/data/v2}
RUN=${RUN:-models/runs/v2-teacher}
PIPELINE_NAME="v2 teacher"
# shellcheck source=models/recipe/pipeline-common.sh
. models/recipe/pipeline-common.sh  # the recipe's environment, log, running
export OMP_NUM_THREADS=1

if running "$RUN/pid"; then
  log "already running as $(cat "$RUN/pid")"
  exit 1
fi
if [ ! -f "$DATA/images64.npz" ]; then
  log "preparing the data set"
  "$PY" -m models.v2.prepare
fi
if [ ! -f "$DATA/text-embeddings.npy" ]; then
  log "embedding the captions (MiniLM)"
  "$PY" -m models.v2.text embed
fi
resume=()
if [ ! -f "$RUN/checkpoints/last.pt" ]; then
  resume=(--resume-snapshot models/v2/snapshots/teacher.pt)
fi
mkdir -p "$RUN"
setsid nohup nice -n 19 "$PY" -m models.v2.train_teacher --run "$RUN" --data "$DATA" --until "$UNTIL" \
  --workers 2 --batch 64 "${resume[@]}" "$@" > "$RUN.out" 2>&1 &
echo $! > "$RUN/pid"
log "pid $(cat "$RUN/pid") until $UNTIL ${resume[*]} $*"
