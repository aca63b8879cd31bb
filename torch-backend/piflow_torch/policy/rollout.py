"""Substep integration of one NFE segment (golden README §3 ``rollout``).

n Euler substeps uniform in raw time, x ← x + π(x, σ)·(σ' − σ). The substep count rule is explicit:
``round`` = max(round((τ_src − τ_dst)·total), 1) with round-half-to-even (the golden vectors, LakonLab
v0.1.x, what the released students were distilled with) or ``ceil`` = max(⌈(τ_src − τ_dst)·total⌉, 1)
(LakonLab v0.2, which made the official fixtures). The σ grid is computed on the host in float64, so
the loop launches kernels only and never waits for the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import PolicyOptionError, PolicySigmaError
from ._checks import check_number
from .shift import unwarp, warp

SUBSTEP_RULES = ("round", "ceil")


class SegmentPolicy(Protocol):
    """What the rollout needs of a policy (GmPolicy and DxPolicy both are one)."""

    def step(self, x: torch.Tensor, sigma_t: float, sigma_next: float) -> torch.Tensor: ...


def check_substep_rule(rule: object) -> str:
    if rule not in SUBSTEP_RULES:
        raise PolicyOptionError(f"substep_rule must be one of {SUBSTEP_RULES}, got {rule!r}")
    return rule  # type: ignore[return-value]


def substep_count(raw_src: float, raw_dst: float, total_substeps: float, rule: str = "round") -> int:
    """Number of substeps of a segment: max(round(Δτ·total), 1) or max(ceil(Δτ·total), 1)."""
    amount = (raw_src - raw_dst) * total_substeps
    count = round(amount) if check_substep_rule(rule) == "round" else math.ceil(amount)
    return max(int(count), 1)


def check_total_substeps(total: object) -> float:
    value = check_number("total_substeps", total, 0.0, 1e6, open_low=True)
    if value < 1:
        raise PolicyOptionError(f"total_substeps must be ≥ 1, got {total!r}")
    return value


@dataclass(frozen=True)
class RolloutResult:
    """What :func:`rollout` did: the state at σ_dst and the grid it walked."""

    x: torch.Tensor
    num_substeps: int
    raw_src: float
    raw_dst: float
    raw_final: float
    sigma_final: float
    sigmas: list[float]
    """the n + 1 σ values visited, first = σ_src"""


def rollout(
    policy: SegmentPolicy,
    x: torch.Tensor,
    *,
    sigma_src: float,
    sigma_dst: float,
    shift: float,
    total_substeps: float,
    substep_rule: str = "round",
    on_substep: Callable[[int, float, torch.Tensor], None] | None = None,
) -> RolloutResult:
    """Integrates ``x`` (not modified) from σ_src to σ_dst with the policy of the segment.

    ``on_substep(i, σ, x)`` is called before the first substep (i = 0) and after each substep i = 1…n.

    Raises:
        PolicySigmaError: σ outside [0, 1] or σ_dst > σ_src
        PolicyOptionError: shift ≤ 0, total_substeps < 1, an unknown substep rule
    """
    for name, value in (("sigma_src", sigma_src), ("sigma_dst", sigma_dst)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise PolicySigmaError(f"{name} must be a number in [0, 1], got {value!r}")
    if sigma_dst > sigma_src:
        raise PolicySigmaError(f"sigma_dst ({sigma_dst}) must not exceed sigma_src ({sigma_src})")
    shift = check_number("shift", shift, 0.0, open_low=True)
    total_substeps = check_total_substeps(total_substeps)
    raw_src = unwarp(float(sigma_src), shift)
    raw_dst = unwarp(float(sigma_dst), shift)
    n = substep_count(raw_src, raw_dst, total_substeps, substep_rule)
    h = (raw_src - raw_dst) / n
    tau, sigma = raw_src, float(sigma_src)
    sigmas = [sigma]
    if on_substep is not None:
        on_substep(0, sigma, x)
    for i in range(n):
        tau = max(tau - h, 0.0)
        sigma_next = warp(tau, shift)
        x = policy.step(x, sigma, sigma_next)
        sigma = sigma_next
        sigmas.append(sigma)
        if on_substep is not None:
            on_substep(i + 1, sigma, x)
    return RolloutResult(x, n, raw_src, raw_dst, tau, sigma, sigmas)
