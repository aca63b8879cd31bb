#!/usr/bin/env bash
# Runs the PyTorch backend's Python (torch-backend/) with its package on the path:
#   bash scripts/torch-py.sh -m piflow_torch.conformance.golden
# Interpreter: $PIFLOW_TORCH_PYTHON, else the virtualenv `scripts/setup.sh --torch` (or --test) made.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PIFLOW_TORCH_PYTHON:-$root/.toolchain/torch-py/bin/python}"
if [ ! -x "$python" ]; then
  echo "piflow: no PyTorch environment at $python; run 'bash scripts/setup.sh --torch' (or set PIFLOW_TORCH_PYTHON)" >&2
  exit 127
fi
export PYTHONPATH="$root/torch-backend${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$@"
