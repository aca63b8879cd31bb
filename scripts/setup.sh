#!/usr/bin/env bash
# Installs what piflow needs. `setup.sh` alone: Node 22 + npm packages (enough for the main job).
# `setup.sh --test`: also the system packages the test suites drive (Chromium, PyTorch CPU, OpenBLAS).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PIFLOW_ROOT"

if [ "${1:-}" = "--test" ]; then
  bash scripts/system-deps.sh
  # A small virtualenv for the Python side of the cross-language suites (reference backend).
  pystamp=".toolchain/py/.piflow-$(sha256sum test/requirements.txt | cut -c1-16)"
  if [ ! -f "$pystamp" ]; then
    python3 -m venv .toolchain/py
    .toolchain/py/bin/pip install -q --disable-pip-version-check -r test/requirements.txt
    touch "$pystamp"
  fi
fi

# npm ci only when the lock file changed since the last install (a stamp inside node_modules).
stamp="node_modules/.piflow-lock-$(sha256sum package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund
  touch "$stamp"
fi
