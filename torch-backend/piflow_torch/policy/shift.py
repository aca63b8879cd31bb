"""Raw time τ ↔ noise level σ under a time shift s (golden README §2), on Python floats or tensors.

σ = s·τ / (1 + (s − 1)·τ), τ = σ / (s + (1 − s)·σ); substeps are uniform in τ. Results are capped at 1:
rounding can give 1.0000000000000002 at τ = 1 for some shifts, which is not a noise level
(policy/src/shift.ts does the same).
"""

from __future__ import annotations

import torch

Scalar = float | torch.Tensor


def warp(tau: Scalar, shift: float) -> Scalar:
    """Raw time → noise level."""
    sigma = shift * tau / (1 + (shift - 1) * tau)
    return sigma.clamp(max=1.0) if isinstance(sigma, torch.Tensor) else min(sigma, 1.0)


def unwarp(sigma: Scalar, shift: float) -> Scalar:
    """Noise level → raw time (inverse of :func:`warp`)."""
    tau = sigma / (shift + (1 - shift) * sigma)
    return tau.clamp(max=1.0) if isinstance(tau, torch.Tensor) else min(tau, 1.0)
