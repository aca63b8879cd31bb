"""NFE schedule of the FlowMapSDE scheduler (golden README §3 ``schedule``), on the host in float64.

Raw-time grid with a shortened final step (``final_step_size_scale``), optional dynamic shift, optional
SDE-style h, the substep count per step under an explicit rule, and the automatic GM temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import PolicyOptionError
from ._checks import check_int, check_number
from .rollout import check_substep_rule, check_total_substeps, substep_count
from .shift import unwarp, warp


@dataclass(frozen=True)
class DynamicShift:
    """FLUX-style dynamic shifting: exp((seq_len − base)·(max_log − base_log)/(max − base) + base_log)."""

    seq_len: float
    base_seq_len: float = 256
    max_seq_len: float = 4096
    base_logshift: float = 0.5
    max_logshift: float = 1.15

    def shift(self) -> float:
        seq_len = check_number("dynamic_shift.seq_len", self.seq_len, 0.0)
        base = check_number("dynamic_shift.base_seq_len", self.base_seq_len, 0.0)
        top = check_number("dynamic_shift.max_seq_len", self.max_seq_len, 0.0)
        base_log = check_number("dynamic_shift.base_logshift", self.base_logshift, -math.inf)
        max_log = check_number("dynamic_shift.max_logshift", self.max_logshift, -math.inf)
        if top == base:
            raise PolicyOptionError("dynamic_shift.max_seq_len must differ from base_seq_len")
        return math.exp((seq_len - base) * (max_log - base_log) / (top - base) + base_log)


@dataclass(frozen=True)
class ScheduleStep:
    raw_src: float
    raw_dst: float
    sigma_src: float
    sigma_next: float
    sigma_dst: float
    m: float
    timestep: float
    timestep_dst: float
    num_substeps: int
    temperature: float
    """the 'auto' GM temperature of this step (1 on the last)"""


@dataclass(frozen=True)
class Schedule:
    nfe: int
    shift_used: float
    total_substeps: float
    substep_rule: str
    auto_temperature: float
    total_substeps_used: int
    h: float
    steps: list[ScheduleStep]


def auto_temperature(nfe: int) -> float:
    """clip(0.1·(nfe − 1), 0, 1), used for every step but the last."""
    return min(max(0.1 * (nfe - 1), 0.0), 1.0)


def build_schedule(
    nfe: int,
    *,
    shift: float = 1.0,
    final_step_size_scale: float = 1.0,
    total_substeps: float = 128,
    substep_rule: str = "round",
    h: float = 0.0,
    num_train_timesteps: float = 1000,
    dynamic_shift: DynamicShift | None = None,
) -> Schedule:
    """The σ schedule of an ``nfe``-step sampler (policy/src/schedule.ts ``buildSchedule``).

    Raises:
        PolicyOptionError: an option out of range
    """
    nfe = check_int("nfe", nfe, 1, 10_000)
    fs = check_number("final_step_size_scale", final_step_size_scale, 0.0, open_low=True)
    total_substeps = check_total_substeps(total_substeps)
    rule = check_substep_rule(substep_rule)
    h = check_number("h", h, 0.0)
    num_train_timesteps = check_number("num_train_timesteps", num_train_timesteps, 0.0, open_low=True)
    shift_used = dynamic_shift.shift() if dynamic_shift is not None else check_number("shift", shift, 0.0, open_low=True)
    if not (shift_used > 0 and math.isfinite(shift_used)):
        raise PolicyOptionError(f"the shift in use must be a finite positive number, got {shift_used}")

    raw_src = [max(1 - k / (nfe - 1 + fs), 0.0) for k in range(nfe)]
    sigma_src = [warp(t, shift_used) for t in raw_src]
    auto = auto_temperature(nfe)
    steps: list[ScheduleStep] = []
    for k in range(nfe):
        s_src = sigma_src[k]
        s_next = sigma_src[k + 1] if k + 1 < nfe else 0.0
        m = 1.0 if h == 0 else (s_next * (1 - s_src) / max(s_src * (1 - s_next), 1e-6)) ** (h * h)
        s_dst = s_next * m / max(1 - s_next + s_next * m, 1e-6)
        raw_dst = unwarp(s_dst, shift_used)
        steps.append(
            ScheduleStep(
                raw_src=raw_src[k],
                raw_dst=raw_dst,
                sigma_src=s_src,
                sigma_next=s_next,
                sigma_dst=s_dst,
                m=m,
                timestep=num_train_timesteps * s_src,
                timestep_dst=num_train_timesteps * s_dst,
                num_substeps=substep_count(raw_src[k], raw_dst, total_substeps, rule),
                temperature=1.0 if k == nfe - 1 else auto,
            )
        )
    return Schedule(
        nfe=nfe,
        shift_used=shift_used,
        total_substeps=total_substeps,
        substep_rule=rule,
        auto_temperature=auto,
        total_substeps_used=sum(s.num_substeps for s in steps),
        h=h,
        steps=steps,
    )
