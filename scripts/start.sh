#!/usr/bin/env bash
# The main job: installs what is needed and starts the local stack (backend + edge worker) with the
# shipped default model.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PIFLOW_ROOT"
bash scripts/setup.sh
# exec, all the way down: a signal to this process (systemd, docker stop, timeout, a closed terminal)
# reaches start.ts, which stops every child. `exec npm start` had npm pass it to its `sh -c` only.
exec node --import tsx scripts/start.ts "$@"
