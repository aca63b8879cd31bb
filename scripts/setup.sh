#!/usr/bin/env bash
# Installs what piflow needs. `setup.sh` alone: Node 22 + npm packages (enough for the main job).
# `setup.sh --test`: also the system packages the test suites drive (Chromium, PyTorch CPU, OpenBLAS, cairo)
# and the PyTorch virtualenv with both its package sets. `setup.sh --torch`: Node + npm packages + the
# PyTorch backend's packages only (a GPU host). `setup.sh --models`: the default model's v2 recipe and
# independent evaluation (their packages in the same virtualenv, and the art packages of models/v2/art).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PIFLOW_ROOT"

# One PyTorch virtualenv, .toolchain/torch-py (PyPI's torch wheel brings its CUDA libraries, ~6 GB: one
# copy, not one per use), holding package sets named by requirement files; each set is installed when
# the stamp of its file's hash is missing.
install_python_set() { # <name> <requirements file>
  local stamp=".toolchain/torch-py/.piflow-$1-$(sha256sum "$2" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "piflow: installing $2 into .toolchain/torch-py" >&2
  [ -x .toolchain/torch-py/bin/python ] || python3 -m venv .toolchain/torch-py
  .toolchain/torch-py/bin/pip install -q --disable-pip-version-check -r "$2"
  rm -f .toolchain/torch-py/.piflow-"$1"-*
  touch "$stamp"
}

# The PyTorch backend (torch-backend/).
install_torch_env() { install_python_set backend torch-backend/requirements.txt; }

# The default model's v2 recipe and the independent evaluation (models/v2, models/eval): their Python
# packages beside the backend's (same torch), and the emoji art packages (their own npm lock file).
install_models_env() {
  install_torch_env
  install_python_set models models/v2/requirements.txt
  local art=models/v2/art
  local artstamp="$art/node_modules/.piflow-$(sha256sum "$art/package-lock.json" | cut -c1-16)"
  if [ ! -f "$artstamp" ]; then
    (cd "$art" && npm ci --no-audit --no-fund >&2)
    touch "$artstamp"
  fi
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
  install_models_env
elif [ "${1:-}" = "--torch" ]; then
  install_torch_env
elif [ "${1:-}" = "--models" ]; then
  install_models_env
fi

# npm ci only when the lock file changed since the last install (a stamp inside node_modules).
stamp="node_modules/.piflow-lock-$(sha256sum package-lock.json | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund
  touch "$stamp"
fi
