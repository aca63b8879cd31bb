#!/usr/bin/env bash
# System packages for the test suites, from Debian: Chromium (SDK + WebGPU tests in a real browser),
# PyTorch 1.13 CPU + onnx for /usr/bin/python3 (model recipe smoke test), OpenBLAS (21x faster than the
# reference BLAS Debian picks by default; see models/README.md), cairo (cairosvg renders the v2 data's
# Fluent Emoji SVGs).
set -euo pipefail
pkgs=(chromium python3-torch python3-onnx python3-numpy python3-pil libopenblas0-pthread libcairo2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "piflow: installing system packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
