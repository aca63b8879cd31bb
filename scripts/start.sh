#!/usr/bin/env bash
# The main job: installs what is needed and starts the local stack (backend + edge worker) with the
# shipped default model.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PIFLOW_ROOT"
bash scripts/setup.sh
exec npm start -- "$@"
