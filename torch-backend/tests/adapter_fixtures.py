"""Copies of the official fixtures with one thing changed, for the loader's error paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from conftest import OFFICIAL_DIR
from safetensors.torch import load_file, save_file

FLUX = OFFICIAL_DIR / "piflux_gm_k8_tiny"
QWEN = OFFICIAL_DIR / "piqwen_gm_k8_tiny"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def copy_case(case: Path, target: Path) -> Path:
    shutil.copytree(case, target)
    for path in target.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return target


def read_adapter(adapter: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(adapter / WEIGHTS), framework="pt") as f:
        metadata = f.metadata() or {}
    return load_file(str(adapter / WEIGHTS)), metadata


def rewrite_adapter(adapter: Path, edit_tensors=None, metadata: dict[str, str] | None = None, edit_config=None) -> None:
    """Rewrites an adapter copy: ``edit_tensors(dict)`` in place, new metadata, ``edit_config(dict)``."""
    tensors, meta = read_adapter(adapter)
    if edit_tensors is not None:
        edit_tensors(tensors)
    save_file(tensors, str(adapter / WEIGHTS), metadata=meta if metadata is None else metadata)
    if edit_config is not None:
        config = json.loads((adapter / "config.json").read_text())
        edit_config(config)
        (adapter / "config.json").write_text(json.dumps(config))
