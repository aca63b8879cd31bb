#!/usr/bin/env bash
# Installs what piflow needs. `setup.sh` alone: Node 22 + npm packages (enough for the main job).
# `setup.sh --test`: also the system packages the test suites drive (Chromium, PyTorch CPU, OpenBLAS).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PIFLOW_ROOT"

if [ "${1:-}" = "--test" ]; then
  bash scripts/system-deps.sh
fi

# npm ci only when the lock file changed since the last install (a stamp inside node_modules).
stamp="node_modules/.piflow-lock-$(sha256sum package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund
  touch "$stamp"
fi
