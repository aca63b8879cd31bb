"""Qwen-Image specifics: how pi-Qwen-Image students are called (as PiQwenImagePipeline calls
GMQwenImageTransformer2DModel).

Conditioning: ``prompt_embeds`` (B, S_txt, joint_attention_dim, the Qwen2.5-VL hidden states) and
``prompt_embeds_mask`` (B, S_txt) (bool, int or float; optional). Text positions masked in every sample
are dropped once per generation, as the official wrapper does. No guidance embedding; no CFG.
"""

from __future__ import annotations

import torch
from diffusers import QwenImageTransformer2DModel

from .conditioning import check_cond_tensor

KIND = "qwen"
BASE_CLASS = QwenImageTransformer2DModel
GM_CLASS_NAME = "GMQwenImageTransformer2DModel"
CONDITIONING = ("prompt_embeds", "prompt_embeds_mask")


def prepare(conditioning: dict, batch: int, config: dict, dtype: torch.dtype, device: torch.device) -> dict:
    """Checks, places and trims the conditioning once per generation (a host sync for the mask)."""
    embeds = check_cond_tensor(conditioning, "prompt_embeds", (batch, None, config["joint_attention_dim"]), device, dtype)
    mask = None
    if conditioning.get("prompt_embeds_mask") is not None:
        mask = check_cond_tensor(conditioning, "prompt_embeds_mask", (batch, embeds.shape[1]), device, None)
        keep = mask.bool().any(dim=0)
        embeds, mask = embeds[:, keep], mask[:, keep]
    return {"prompt_embeds": embeds, "prompt_embeds_mask": mask}


def call(model: torch.nn.Module, x_packed: torch.Tensor, sigma: torch.Tensor, cond: dict, height: int, width: int):
    """One forward of the base's own diffusers ``forward`` on packed tokens (B, h·w, 64)."""
    return model(
        hidden_states=x_packed,
        encoder_hidden_states=cond["prompt_embeds"],
        encoder_hidden_states_mask=cond["prompt_embeds_mask"],
        timestep=sigma,
        img_shapes=[[(1, height, width)]] * x_packed.shape[0],
        return_dict=False,
    )[0]


def cast_rope_to_model_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Nothing: the official GMQwen forward keeps diffusers' RoPE as is."""
