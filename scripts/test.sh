#!/usr/bin/env bash
# The one test command: installs everything the suites need, then runs them all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PIFLOW_ROOT"
bash scripts/setup.sh --test
npm test
