"""The few-step sampling loop (golden README §3 ``sampling_loop``): for each NFE, one student forward at
(x, σ_src), then the policy built from its output is rolled out to σ_dst (policy/src/sample.ts).

The loop is the one implementation behind both the golden ``sampling_loop`` cases (recorded network
outputs) and ``piflow_torch.sampler.sample`` (a loaded student).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import Cancelled, PolicyOptionError
from ._checks import check_latent, check_number
from .dx import DX_DEFAULT_EPS, DxPolicy
from .gm import GM_DEFAULT_EPS, GmPolicy
from .rollout import rollout
from .schedule import Schedule
from .types import DxOutput, GmOutput, PolicyOutput


@dataclass(frozen=True)
class DxOptions:
    """The intrinsic parameters of a DX student (its adapter's ``policy_config``)."""

    segment_size: float = 1.0
    shift: float = 1.0
    mode: str = "grid"


def build_segment_policy(
    output: PolicyOutput,
    x: torch.Tensor,
    sigma_src: float,
    *,
    eps: float | None = None,
    temperature: float = 1.0,
    dx: DxOptions | None = None,
) -> GmPolicy | DxPolicy:
    """The policy of one segment from a network output (``eps`` None = the policy type's default)."""
    if isinstance(output, GmOutput):
        return GmPolicy(output, x, sigma_src, eps=GM_DEFAULT_EPS if eps is None else eps, temperature=temperature)
    if isinstance(output, DxOutput):
        options = dx or DxOptions()
        return DxPolicy(
            output,
            x,
            sigma_src,
            segment_size=options.segment_size,
            shift=options.shift,
            mode=options.mode,
            eps=DX_DEFAULT_EPS if eps is None else eps,
        )
    raise PolicyOptionError(f"unknown policy output {type(output).__name__}: expected GmOutput or DxOutput")


Forward = Callable[[torch.Tensor, float, int], PolicyOutput]
"""forward(x, σ_src, step_index) → the student's policy output at (x, σ_src)."""


def sample_loop(
    x_init: torch.Tensor,
    schedule: Schedule,
    forward: Forward,
    *,
    eps: float | None = None,
    temperature: float | str = "auto",
    dx: DxOptions | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Runs the sampler and returns x at σ_dst of the last step (x_init is not modified).

    GM temperature: ``'auto'`` = the schedule's (clip(0.1·(nfe − 1), 0, 1)), or a number, applied on every
    step but the last, as the official pipelines do. ``should_stop()`` is checked before each NFE and
    raises :class:`Cancelled`; ``on_step(k, x)`` runs after NFE k with the state it produced.

    Raises:
        PolicyOptionError: an unsupported schedule (h > 0: stochastic FlowMapSDE steps) or temperature
        Cancelled: when ``should_stop()`` returned true
    """
    x = check_latent("x_init", x_init)
    if schedule.h != 0:
        raise PolicyOptionError("stochastic FlowMapSDE sampling (h > 0) is not supported: the students sample with h = 0")
    if temperature != "auto":
        temperature = check_number("temperature", temperature, 0.0)
    nfe = len(schedule.steps)
    for k, step in enumerate(schedule.steps):
        if should_stop is not None and should_stop():
            raise Cancelled(f"generation cancelled before NFE {k + 1} of {nfe}", completed_steps=k)
        output = forward(x, step.sigma_src, k)
        step_temperature = step.temperature if temperature == "auto" else (1.0 if k == nfe - 1 else temperature)
        policy = build_segment_policy(output.to(x.dtype), x, step.sigma_src, eps=eps, temperature=step_temperature, dx=dx)
        x = rollout(
            policy,
            x,
            sigma_src=step.sigma_src,
            sigma_dst=step.sigma_dst,
            shift=schedule.shift_used,
            total_substeps=schedule.total_substeps,
            substep_rule=schedule.substep_rule,
        ).x
        del policy  # its per-segment tensors can go before the next forward
        if on_step is not None:
            on_step(k, x)
    return x
