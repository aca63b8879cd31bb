# Sourced by the unattended pipelines (models/recipe/pipeline.sh for v1, models/v2/pipeline.sh): the
# recipe's environment and the steps both run alike. The caller defines export_model and EXPORT_EVERY.

# what models/recipe/common.py env_warnings asks for: passive OpenMP waits and large malloc thresholds
export OMP_WAIT_POLICY=PASSIVE
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296

log() { echo "$(date -u +%H:%M:%S) ${PIPELINE_NAME:-pipeline}: $*"; }

wait_until() { # UTC HH:MM (today); returns at once if it has passed
  local target
  target=$(date -u -d "$1" +%s)
  while [ "$(date -u +%s)" -lt "$target" ]; do sleep 15; done
}

running() { # PIDFILE: its process is alive
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_at() { # HH:MM PIDFILE WHAT: at that time, SIGTERM the process (trainers then checkpoint) and wait for it
  wait_until "$1"
  local pid
  pid=$(cat "$2")
  log "stopping $3 $pid"
  kill -TERM "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 2; done
}

watch_distillation() { # PID CHECKPOINT: export_model every EXPORT_EVERY s while PID runs, then wait for it
  local last
  last=$(date +%s)
  while kill -0 "$1" 2>/dev/null; do
    sleep 15
    if [ $(($(date +%s) - last)) -ge "$EXPORT_EVERY" ] && [ -f "$2" ]; then
      export_model
      last=$(date +%s)
    fi
  done
  wait "$1"
  log "distillation exited with $?"
}
