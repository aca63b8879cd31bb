"""Validation at the policy boundary (never inside substep loops), with the policy error types.

σ arguments are either one Python float shared by the batch (the sampler's case: no tensor, no host
synchronisation) or a (B,) tensor of per-sample values. Tensor values are checked here once, which
synchronises with the device; the sampler never passes tensors.
"""

from __future__ import annotations

import math

import torch

from ..errors import PolicyOptionError, PolicyShapeError, PolicySigmaError

Sigma = float | torch.Tensor

MAX_ELEMENTS = 2**31 - 1
"""Largest tensor the policy module accepts (the TypeScript module's MAX_ELEMENTS)."""


def check_number(name: str, value: object, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
    """A finite real number in [low, high] (or (low, high] with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyOptionError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) or v == high == math.inf) or v > high or v < low or (open_low and v == low):
        bound = "(" if open_low else "["
        raise PolicyOptionError(f"{name} must be in {bound}{low}, {high}], got {value!r}")
    return v


def check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyOptionError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_latent(name: str, x: object, ndim: int = 4) -> torch.Tensor:
    """A floating-point tensor of ``ndim`` dimensions, not too large."""
    if not isinstance(x, torch.Tensor):
        raise PolicyShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != ndim:
        raise PolicyShapeError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise PolicyShapeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.numel() > MAX_ELEMENTS:
        raise PolicyShapeError(f"{name} has {x.numel()} elements (max {MAX_ELEMENTS})")
    return x


def check_like(name: str, t: object, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A tensor of exactly ``shape`` on ``like``'s device; cast to ``like``'s dtype."""
    if not isinstance(t, torch.Tensor):
        raise PolicyShapeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise PolicyShapeError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.device != like.device:
        raise PolicyShapeError(f"{name} is on {t.device}, the latents on {like.device}")
    return t.to(like.dtype)


def check_sigma(name: str, sigma: object, batch: int) -> Sigma:
    """σ: a float in [0, 1] or a (B,) tensor of values in [0, 1] (checked on the host once)."""
    if isinstance(sigma, torch.Tensor):
        if tuple(sigma.shape) != (batch,):
            raise PolicyShapeError(f"{name} must be a float or a ({batch},) tensor, got shape {tuple(sigma.shape)}")
        values = sigma.detach().to("cpu", torch.float64)
        if not bool(((values >= 0) & (values <= 1)).all()):
            raise PolicySigmaError(f"{name} must be in [0, 1], got {values.tolist()}")
        return sigma.to(torch.float64)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= float(sigma) <= 1:
        raise PolicySigmaError(f"{name} must be a number in [0, 1], got {sigma!r}")
    return float(sigma)


def at_least(value: Sigma, floor: float) -> Sigma:
    """max(value, floor) on a float or elementwise on a tensor."""
    return value.clamp(min=floor) if isinstance(value, torch.Tensor) else max(value, floor)


def per_sample(value: Sigma, ndim: int, dtype: torch.dtype) -> Sigma:
    """A float as is; a (B,) tensor as (B, 1, …, 1) of ``ndim`` dimensions in ``dtype`` for broadcasting."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype).reshape(value.shape[0], *([1] * (ndim - 1)))
    return value
