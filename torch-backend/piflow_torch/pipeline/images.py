"""From final latents to PNG bytes: the base's VAE decode (as the official pipelines do it) and PNG encoding.

Latents here are unpacked, (B, 16, H/8, W/8), in the transformer's latent space. FLUX's VAE takes
`latents / scaling_factor + shift_factor`; Qwen-Image's is a video VAE that takes (B, 16, 1, h, w)
de-normalised per channel with `latents_std` / `latents_mean`. Both return images in [-1, 1], which
diffusers' `VaeImageProcessor.postprocess` turns into 8-bit RGB exactly as the official pipelines do.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def to_vae_space(family: str, vae, latents: torch.Tensor) -> torch.Tensor:
    """Transformer latents (B, C, h, w) → what `vae.decode` takes."""
    if family == 'flux':
        return latents / vae.config.scaling_factor + vae.config.shift_factor
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype).view(1, z, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype).view(1, z, 1, 1, 1)
    return latents[:, :, None] * std + mean


def from_vae_space(family: str, vae, moments: torch.Tensor) -> torch.Tensor:
    """The inverse of `to_vae_space` (for VAE-encoded images; used to fit the previews)."""
    if family == 'flux':
        return (moments - vae.config.shift_factor) * vae.config.scaling_factor
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=moments.device, dtype=moments.dtype).view(1, z, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=moments.device, dtype=moments.dtype).view(1, z, 1, 1, 1)
    return ((moments - mean) / std)[:, :, 0]


@torch.inference_mode()
def decode_latents(family: str, base, latents: torch.Tensor) -> list[np.ndarray]:
    """VAE-decodes (B, C, h, w) latents into B uint8 (H, W, 3) arrays."""
    vae = base.vae
    image = vae.decode(to_vae_space(family, vae, latents).to(vae.dtype), return_dict=False)[0]
    if family == 'qwen':
        image = image[:, :, 0]
    return [np.asarray(pil) for pil in base.image_processor.postprocess(image, output_type='pil')]


@torch.inference_mode()
def encode_images(family: str, vae, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [-1, 1] → their latents' means (B, C, H/8, W/8), in transformer space."""
    x = images.to(device=vae.device, dtype=vae.dtype)
    if family == 'qwen':
        x = x[:, :, None]
    moments = vae.encode(x).latent_dist.mean.float()
    return from_vae_space(family, vae, moments)


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 → PNG file bytes."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'png_bytes takes (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}')
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format='PNG')
    return out.getvalue()
