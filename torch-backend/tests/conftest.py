"""Shared paths and helpers of the torch-backend tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKEND_ROOT = REPO_ROOT / "torch-backend"
GOLDEN_DIR = REPO_ROOT / "fixtures" / "golden"
OFFICIAL_DIR = REPO_ROOT / "fixtures" / "official"
NOISE_VECTORS = REPO_ROOT / "policy" / "vectors" / "noise.json"

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def run_python(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs this interpreter with ``args`` in a fresh process (its own environment and imports)."""
    full_env = {**os.environ, "PYTHONPATH": str(BACKEND_ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, cwd=REPO_ROOT, timeout=600)


def run_module(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m module args`` as the npm scripts do."""
    return run_python(["-m", module, *args], env)


def closing_counts(stdout: str) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a runner's closing ``N passed, N failed, N skipped`` line."""
    last = stdout.strip().splitlines()[-1]
    parts = dict(reversed(p.strip().split(" ", 1)) for p in last.split(","))
    return int(parts["passed"]), int(parts["failed"]), int(parts.get("skipped", 0))
