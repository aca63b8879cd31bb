"""FLUX.1 specifics: how pi-FLUX students are called (as PiFluxPipeline calls GMFluxTransformer2DModel).

Conditioning: ``prompt_embeds`` (B, S_txt, joint_attention_dim, T5), ``pooled_prompt_embeds``
(B, pooled_projection_dim, CLIP) and, for guidance-distilled bases, ``guidance`` (B,) — the embedded
guidance scale (3.5 for pi-FLUX.1), scaled by 1000 inside the model. RoPE ids: image tokens
(0, row, col) of the 2×2-packed latent, text tokens zeros.
"""

from __future__ import annotations

import torch
from diffusers import FluxTransformer2DModel

from ..errors import ConditioningError
from .conditioning import check_cond_tensor

KIND = "flux"
BASE_CLASS = FluxTransformer2DModel
GM_CLASS_NAME = "GMFluxTransformer2DModel"
CONDITIONING = ("prompt_embeds", "pooled_prompt_embeds", "guidance")


def image_ids(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(h·w, 3) RoPE ids of the packed image tokens: (0, row, col), row-major."""
    ids = torch.zeros(height, width, 3, device=device)
    ids[..., 1] = torch.arange(height, device=device)[:, None]
    ids[..., 2] = torch.arange(width, device=device)[None, :]
    return ids.reshape(height * width, 3)


def text_ids(length: int, device: torch.device) -> torch.Tensor:
    return torch.zeros(length, 3, device=device)


def prepare(conditioning: dict, batch: int, config: dict, dtype: torch.dtype, device: torch.device) -> dict:
    """Checks and places the conditioning once per generation (dtype: the model's)."""
    embeds = check_cond_tensor(conditioning, "prompt_embeds", (batch, None, config["joint_attention_dim"]), device, dtype)
    pooled = check_cond_tensor(conditioning, "pooled_prompt_embeds", (batch, config["pooled_projection_dim"]), device, dtype)
    prepared = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "guidance": None}
    if config.get("guidance_embeds"):
        if conditioning.get("guidance") is None:
            raise ConditioningError("this FLUX base is guidance-distilled: conditioning needs 'guidance' (B,), e.g. 3.5")
        prepared["guidance"] = check_cond_tensor(conditioning, "guidance", (batch,), device, torch.float32)
    return prepared


def call(model: torch.nn.Module, x_packed: torch.Tensor, sigma: torch.Tensor, cond: dict, height: int, width: int):
    """One forward of the base's own diffusers ``forward`` on packed tokens (B, h·w, 64)."""
    return model(
        hidden_states=x_packed,
        encoder_hidden_states=cond["prompt_embeds"],
        pooled_projections=cond["pooled_prompt_embeds"],
        timestep=sigma,
        img_ids=image_ids(height, width, x_packed.device),
        txt_ids=text_ids(cond["prompt_embeds"].shape[1], x_packed.device),
        guidance=cond["guidance"],
        return_dict=False,
    )[0]


def cast_rope_to_model_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """The official GMFlux forward casts the RoPE cos/sin to the compute dtype; diffusers' does not."""

    def cast(_module: torch.nn.Module, _inputs: tuple, output: tuple) -> tuple:
        return tuple(t.to(dtype) for t in output)

    model.pos_embed.register_forward_hook(cast)
