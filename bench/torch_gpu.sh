#!/usr/bin/env bash
# The prepared GPU benchmark (one command, at most 9 minutes on an H100/H200-class GPU):
#   bash bench/torch_gpu.sh [OUT_DIR]
# Builds a full-size pi-FLUX.1-shaped model with random bf16 weights (FLUX.1-dev's transformer config +
# a rank-256 GM K=8 adapter in the released format; real weights cannot be downloaded here), loads it
# through the backend's own loader, and measures at 1024², 4 NFE: ms per forward, policy rollout ms per
# NFE, images/s at batch 1 / 4 / 8, diffusers' FluxPipeline on the same weights at 4 and 50 steps, peak
# GPU memory. Needs torch, diffusers, transformers, peft, safetensors, pillow (torch-backend/requirements.txt)
# in $PIFLOW_TORCH_PYTHON or python3, and ~60 GB of free disk for the written model.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-$root/out}}"
mkdir -p "$out"
python="${PIFLOW_TORCH_PYTHON:-python3}"
[ -x "$root/.toolchain/torch-py/bin/python" ] && [ -z "${PIFLOW_TORCH_PYTHON:-}" ] && python="$root/.toolchain/torch-py/bin/python"
"$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA GPU visible"; print(torch.__version__, torch.cuda.get_device_name())'
export PYTHONUNBUFFERED=1 PYTHONPATH="$root/torch-backend${PYTHONPATH:+:$PYTHONPATH}"
# TMPDIR holds the written model (~26 GB): keep it on the biggest disk.
timeout 540 "$python" "$root/bench/torch_bench.py" --profile full --device cuda --size 1024 \
  --batches 1,4,8 --baseline-steps 4,50 --repeats 2 --json "$out/torch-gpu.json" 2>&1 | tee "$out/torch-gpu.md"
