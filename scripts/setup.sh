#!/usr/bin/env bash
# Installs what piflow needs. `setup.sh` alone: Node 22 + npm packages (enough for the main job).
# `setup.sh --test`: also the system packages the test suites drive (Chromium, PyTorch CPU, OpenBLAS) and
# the PyTorch backend's virtualenv. `setup.sh --torch`: Node + npm packages + that virtualenv only (a GPU host).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PIFLOW_ROOT"

# The PyTorch backend (torch-backend/) in .toolchain/torch-py, from torch-backend/requirements.txt; skipped
# when a stamp of the requirements' hash is present. PyPI's torch wheel brings its CUDA libraries (~6 GB).
install_torch_env() {
  local stamp=".toolchain/torch-py/.piflow-$(sha256sum torch-backend/requirements.txt | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "piflow: installing the PyTorch backend's Python packages into .toolchain/torch-py" >&2
  python3 -m venv .toolchain/torch-py
  .toolchain/torch-py/bin/pip install -q --disable-pip-version-check -r torch-backend/requirements.txt
  rm -f .toolchain/torch-py/.piflow-*
  touch "$stamp"
}

if [ "${1:-}" = "--test" ]; then
  bash scripts/system-deps.sh
  # A small virtualenv for the Python side of the cross-language suites (reference backend).
  pystamp=".toolchain/py/.piflow-$(sha256sum test/requirements.txt | cut -c1-16)"
  if [ ! -f "$pystamp" ]; then
    python3 -m venv .toolchain/py
    .toolchain/py/bin/pip install -q --disable-pip-version-check -r test/requirements.txt
    touch "$pystamp"
  fi
  install_torch_env
elif [ "${1:-}" = "--torch" ]; then
  install_torch_env
fi

# npm ci only when the lock file changed since the last install (a stamp inside node_modules).
stamp="node_modules/.piflow-lock-$(sha256sum package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund
  touch "$stamp"
fi
