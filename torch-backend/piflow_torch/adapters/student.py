"""A loaded π-Flow student: a diffusers base transformer with the adapter applied, called as the
official pipelines call it, returning policy outputs in the golden layout (float32)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType

import torch

from ..errors import ConditioningError, PolicyShapeError
from ..policy import DxOptions, DxOutput, GmOutput, PolicyOutput

PATCH = 2
"""Latents are packed 2×2 into tokens: (B, C, H, W) ↔ (B, H/2·W/2, 4C)."""


def pack_latents(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H/2·W/2, C·4), channel-major within a token (as the pipelines pack)."""
    b, c, h, w = x.shape
    if h % PATCH or w % PATCH:
        raise PolicyShapeError(f"latent height and width must be even to pack 2×2, got {h}×{w}")
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x_packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, h·w, C·4) → (B, C, 2h, 2w) for token grid h × w (the inverse of :func:`pack_latents`)."""
    b, _, channels = x_packed.shape
    c = channels // 4
    return x_packed.reshape(b, height, width, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 2 * height, 2 * width)


def unpack_groups(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, h·w, G, C·4) → (B, G, C, 2h, 2w): GM means / log-weights per component, DX nodes."""
    b, _, groups, channels = packed.shape
    c = channels // 4
    grid = packed.reshape(b, height, width, groups, c, 2, 2).permute(0, 3, 4, 1, 5, 2, 6)
    return grid.reshape(b, groups, c, 2 * height, 2 * width)


@dataclass(frozen=True)
class PreparedConditioning:
    """Conditioning checked, cast and placed for one generation (``Student.prepare_conditioning``)."""

    tensors: dict
    batch: int


class Student:
    """A π-Flow student ready to run (``load_student`` builds it).

    Attributes:
        kind: ``flux`` or ``qwen``
        policy_type: ``gm`` or ``dx``
        k: GM components (K), or DX nodes (N)
        latent_channels: C of the unpacked latent (16)
        patch_size: 2 (latents are packed 2×2 into tokens)
        policy_kwargs: the adapter's ``policy_config`` kwargs (DX: segment_size, shift, mode; eps)
        uses_guidance: True for guidance-distilled FLUX bases (conditioning needs ``guidance``)
        dtype, device: of the transformer
        transformer: the diffusers module (base + LoRA + output layer)
    """

    def __init__(
        self,
        *,
        transformer: torch.nn.Module,
        base: ModuleType,
        config: dict,
        policy_type: str,
        k: int,
        policy_kwargs: dict,
        dtype: torch.dtype,
        device: torch.device,
        output_layer: torch.nn.Module | None,
    ):
        self.transformer = transformer
        self.kind = base.KIND
        self.policy_type = policy_type
        self.k = k
        self.latent_channels = config["in_channels"] // (PATCH * PATCH)
        self.patch_size = PATCH
        self.policy_kwargs = dict(policy_kwargs)
        self.uses_guidance = bool(config.get("guidance_embeds")) and base.KIND == "flux"
        self.dtype = dtype
        self.device = device
        self.conditioning_names = base.CONDITIONING
        self._base = base
        self._config = config
        self._output_layer = output_layer
        # One forward at a time per student: a GPU runs them one after another anyway, and diffusers'
        # attention processors and caches are not meant for concurrent calls on one module.
        self._lock = threading.Lock()

    @property
    def dx_options(self) -> DxOptions | None:
        """The DX policy's intrinsic parameters (None for GM students)."""
        if self.policy_type != "dx":
            return None
        kw = self.policy_kwargs
        return DxOptions(kw.get("segment_size", 1.0), kw.get("shift", 1.0), kw.get("mode", "grid"))

    def prepare_conditioning(self, conditioning: dict | PreparedConditioning, batch: int) -> PreparedConditioning:
        """Checks the text conditioning for a batch of ``batch`` and places it on the device, once."""
        if isinstance(conditioning, PreparedConditioning):
            if conditioning.batch != batch:
                raise ConditioningError(f"conditioning was prepared for batch {conditioning.batch}, not {batch}")
            return conditioning
        if not isinstance(conditioning, dict):
            raise ConditioningError(f"conditioning must be a dict of tensors ({', '.join(self.conditioning_names)})")
        unknown = sorted(set(conditioning) - set(self.conditioning_names))
        if unknown:
            raise ConditioningError(f"unknown conditioning {unknown}; a {self.kind} student takes {list(self.conditioning_names)}")
        tensors = self._base.prepare(conditioning, batch, self._config, self.dtype, self.device)
        return PreparedConditioning(tensors, batch)

    def forward_raw(
        self, x_packed: torch.Tensor, sigma: float | torch.Tensor, conditioning: dict | PreparedConditioning, *, height: int, width: int
    ) -> dict[str, torch.Tensor]:
        """The transformer call as the official pipeline makes it, outputs as the official model returns them.

        Args:
            x_packed: (B, h·w, 64) tokens of a token grid ``height`` × ``width`` (= latent H/2 × W/2)
            sigma: σ_src (float, or (B,)); the model scales it by 1000
        Returns:
            GM: ``means`` (B, h·w, K, 64), ``logweights`` (B, h·w, K, 4) log-softmaxed over K,
            ``logstds`` (B, 1, 1, 1); DX: ``grid`` (B, h·w, N·64). float32.
        """
        batch = x_packed.shape[0]
        if x_packed.dim() != 3 or x_packed.shape[1] != height * width or x_packed.shape[2] != self.latent_channels * 4:
            raise PolicyShapeError(
                f"x_packed must be (B, {height}·{width}, {self.latent_channels * 4}), got {tuple(x_packed.shape)}"
            )
        cond = self.prepare_conditioning(conditioning, batch).tensors
        timestep = (
            sigma.to(self.device, torch.float32)
            if isinstance(sigma, torch.Tensor)
            else torch.full((batch,), float(sigma), dtype=torch.float32, device=self.device)
        )
        with self._lock, torch.inference_mode():
            out = self._base.call(self.transformer, x_packed.to(self.device, self.dtype), timestep, cond, height, width)
        if self._output_layer is None:
            return {"grid": out.float()}
        # split (and log-softmax) in the model's dtype, then float32, in the official order
        means, logweights, logstds = self._output_layer.split(out)
        return {"means": means.float(), "logweights": logweights.float(), "logstds": logstds.float()}

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, conditioning: dict | PreparedConditioning) -> PolicyOutput:
        """The policy output at (x, σ) in the golden layout, float32 on the student's device.

        Args:
            x: unpacked latents (B, 16, H/8, W/8); packing, RoPE ids and image shapes follow from its shape
            sigma: σ_src, a float shared by the batch or a (B,) tensor
            conditioning: the text conditioning (``conditioning_names``) or a prepared one
        Returns:
            ``GmOutput`` (means_u (B,K,C,H,W), logweights (B,K,1,H,W), logstds (B,1,1,1,1)) or
            ``DxOutput`` (grid_u (B,N,C,H,W))
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.latent_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise PolicyShapeError(f"x must be (B, {self.latent_channels}, H, W) latents, got {got}")
        height, width = x.shape[2] // 2, x.shape[3] // 2
        raw = self.forward_raw(pack_latents(x), sigma, conditioning, height=height, width=width)
        if "grid" in raw:
            grid = raw["grid"].reshape(x.shape[0], height * width, self.k, self.latent_channels * 4)
            return DxOutput(unpack_groups(grid, height, width))
        return GmOutput(
            means_u=unpack_groups(raw["means"], height, width),
            logweights=unpack_groups(raw["logweights"], height, width),
            logstds=raw["logstds"].reshape(x.shape[0], 1, 1, 1, 1),
        )
