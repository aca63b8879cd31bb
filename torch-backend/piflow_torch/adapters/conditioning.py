"""Checks of the text conditioning a student forward takes (named as the diffusers pipelines name it)."""

from __future__ import annotations

import torch

from ..errors import ConditioningError


def check_cond_tensor(
    conditioning: dict,
    name: str,
    shape: tuple[int | None, ...],
    device: torch.device,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """``conditioning[name]`` as a tensor of ``shape`` (None = any size) on ``device`` in ``dtype``."""
    value = conditioning.get(name)
    if not isinstance(value, torch.Tensor):
        raise ConditioningError(f"conditioning needs {name!r} as a tensor of shape {_fmt(shape)}")
    if value.dim() != len(shape) or any(want is not None and got != want for got, want in zip(value.shape, shape)):
        raise ConditioningError(f"conditioning {name!r} must have shape {_fmt(shape)}, got {tuple(value.shape)}")
    return value.to(device=device, dtype=dtype) if dtype is not None else value.to(device=device)


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("S" if d is None else str(d) for d in shape) + ")"
