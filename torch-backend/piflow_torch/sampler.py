"""The sampler that drives a loaded student over its NFEs (``piflow_torch.adapters.Student``).

One generation: the conditioning is checked and placed once, then per NFE one transformer forward at
(x, σ_src) and the policy rollout to σ_dst, all on the student's device in float32 with no host round
trip (σ values are host floats from the schedule). A batch is any number of images of one shape and
settings (several requests batched together); each image's noise is its own (``noise.randn_batch``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .adapters.student import PATCH, Student
from .errors import Cancelled, ConditioningError, PolicyOptionError, PolicyShapeError, PolicyValueError
from .policy import SUBSTEP_RULES, build_schedule, sample_loop
from .policy._checks import check_int, check_number

__all__ = ["Cancelled", "SamplerSettings", "sample"]


@dataclass(frozen=True, kw_only=True)
class SamplerSettings:
    """Per-model sampling settings (a model manifest's). ``nfe`` and ``substep_rule`` have no default:
    the substep count rule (``round`` as the students were distilled, ``ceil`` as LakonLab v0.2 samples)
    must be chosen per model. The other defaults are the released text-to-image students'.

    Attributes:
        nfe: network evaluations (4 or 8 for pi-FLUX.1)
        substep_rule: ``round`` | ``ceil``
        shift: time shift s (3.2)
        final_step_size_scale: the last step's size relative to the others (0.5)
        total_substeps: substeps per unit of raw time (128)
        temperature: GM temperature on every NFE but the last; ``auto`` = clip(0.1·(nfe − 1), 0, 1)
        guidance: FLUX embedded guidance (3.5 for pi-FLUX.1); None for students without it (Qwen)
        eps: the policy's eps; None = the adapter's ``policy_config`` eps, else the official default
    """

    nfe: int
    substep_rule: str
    shift: float = 3.2
    final_step_size_scale: float = 0.5
    total_substeps: int = 128
    temperature: float | str = "auto"
    guidance: float | None = None
    eps: float | None = None

    def __post_init__(self) -> None:
        check_int("nfe", self.nfe, 1, 1000)
        if self.substep_rule not in SUBSTEP_RULES:
            raise PolicyOptionError(f"substep_rule must be one of {SUBSTEP_RULES}, got {self.substep_rule!r}")
        if self.temperature != "auto":
            check_number("temperature", self.temperature, 0.0)
        if self.guidance is not None:
            check_number("guidance", self.guidance, 0.0, 100.0)
        if self.eps is not None:
            check_number("eps", self.eps, 0.0, 1.0, open_low=True)


def _check_noise(student: Student, noise: object) -> torch.Tensor:
    if not isinstance(noise, torch.Tensor) or noise.dim() != 4 or noise.shape[1] != student.latent_channels:
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise PolicyShapeError(f"noise must be (B, {student.latent_channels}, H, W) latents, got {got}")
    if noise.shape[0] < 1 or noise.shape[2] < PATCH or noise.shape[3] < PATCH or noise.shape[2] % PATCH or noise.shape[3] % PATCH:
        raise PolicyShapeError(f"noise height and width must be positive and even, got {tuple(noise.shape)}")
    return noise.to(student.device, torch.float32)


def _with_guidance(student: Student, conditioning: dict, settings: SamplerSettings, batch: int) -> dict:
    """The conditioning plus a (B,) guidance for students with an embedded guidance (FLUX)."""
    if not student.uses_guidance:
        if settings.guidance is not None or conditioning.get("guidance") is not None:
            raise ConditioningError(f"this {student.kind} student has no guidance embedding: leave guidance unset")
        return conditioning
    if conditioning.get("guidance") is not None:
        return conditioning
    if settings.guidance is None:
        raise ConditioningError("this student needs an embedded guidance scale: set SamplerSettings.guidance")
    return {**conditioning, "guidance": torch.full((batch,), float(settings.guidance), dtype=torch.float32)}


def sample(
    student: Student,
    noise: torch.Tensor,
    conditioning: dict,
    settings: SamplerSettings,
    *,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Generates latents from initial noise, as the official pipelines sample (``output_type='latent'``).

    Args:
        student: a loaded student
        noise: (B, 16, H/8, W/8) initial latents (e.g. ``noise.randn_batch(seeds, (16, H/8, W/8))``)
        conditioning: the text-encoder outputs for the batch (``student.conditioning_names``)
        settings: the model's sampling settings
        on_step: ``on_step(step_index, latents_after)`` after each NFE (progress, previews); the latents
            are the live (B, 16, H/8, W/8) float32 state on the device: copy before keeping
        should_stop: checked before every NFE; True raises :class:`Cancelled`
    Returns:
        the final latents (B, 16, H/8, W/8), float32 on the student's device, before VAE decoding
    Raises:
        Cancelled: when ``should_stop()`` returned true (``completed_steps`` says how far it got)
        PolicyShapeError, ConditioningError, PolicyOptionError: bad inputs, before any forward
        PolicyValueError: the result is not finite (the network produced NaN/∞)
    """
    x = _check_noise(student, noise)
    batch = x.shape[0]
    prepared = student.prepare_conditioning(_with_guidance(student, conditioning, settings, batch), batch)
    schedule = build_schedule(
        settings.nfe,
        shift=settings.shift,
        final_step_size_scale=settings.final_step_size_scale,
        total_substeps=settings.total_substeps,
        substep_rule=settings.substep_rule,
    )
    eps = settings.eps if settings.eps is not None else student.policy_kwargs.get("eps")

    def forward(latents: torch.Tensor, sigma: float, _step: int):
        return student.forward(latents, sigma, prepared)

    result = sample_loop(
        x,
        schedule,
        forward,
        eps=eps,
        temperature=settings.temperature,
        dx=student.dx_options,
        on_step=on_step,
        should_stop=should_stop,
    )
    if not bool(torch.isfinite(result).all()):  # one synchronisation, at the end
        raise PolicyValueError("the generated latents are not finite (the network produced NaN or ∞)")
    return result
