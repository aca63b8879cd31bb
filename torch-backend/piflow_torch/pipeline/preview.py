"""Small RGB previews straight from a latent, without running the VAE decoder per NFE.

A VAE's latent channels map to colour almost linearly (the idea behind every "latent to RGB" preview), so
at start-up this fits that linear map for the model's own VAE: it encodes a few smooth synthetic colour
fields, pairs each latent pixel with the 8x8 mean colour of the image above it, and solves least squares
for RGB = W·z + b. A preview is then one (3 × C) matrix product on the device, pooled to at most
`max_side` pixels, 8-bit, PNG. It shows the sampler's current state (noise included at high σ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .images import encode_images, png_bytes

FIT_SEED = 20260101
FIT_IMAGES = 8
FIT_SIZE = 128


def synthetic_fields(count: int, size: int, seed: int) -> torch.Tensor:
    """(count, 3, size, size) smooth random colour fields in [-1, 1] (bicubic-upsampled coarse noise)."""
    gen = torch.Generator().manual_seed(seed)
    fields = []
    for i in range(count):
        coarse = torch.rand(1, 3, 2 + i % 4 * 2, 2 + i % 4 * 2, generator=gen) * 2 - 1
        fields.append(F.interpolate(coarse, size=(size, size), mode='bicubic', align_corners=False))
    return torch.cat(fields).clamp(-1, 1)


class LatentPreviewer:
    """Latent (C, h, w) → PNG bytes of a small RGB preview, by a fitted linear map."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, max_side: int):
        self.weight = weight  # (3, C), float32, on the latents' device
        self.bias = bias  # (3,)
        self.max_side = max_side

    @classmethod
    def fit(cls, family: str, vae, max_side: int) -> 'LatentPreviewer':
        images = synthetic_fields(FIT_IMAGES, FIT_SIZE, FIT_SEED)
        latents = encode_images(family, vae, images)  # (N, C, h, w), float32
        scale = images.shape[-1] // latents.shape[-1]
        colours = F.avg_pool2d(images, scale).to(latents.device)  # (N, 3, h, w)
        z = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
        rgb = colours.permute(0, 2, 3, 1).reshape(-1, 3).double()
        design = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)
        # A little ridge keeps the solve well posed for a VAE whose latent channels are nearly collinear.
        gram = design.T @ design + 1e-3 * torch.eye(design.shape[1], dtype=design.dtype, device=design.device)
        solution = torch.linalg.solve(gram, design.T @ rgb)  # (C + 1, 3)
        return cls(solution[:-1].T.float(), solution[-1].float(), max_side)

    @torch.inference_mode()
    def rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """(C, h, w) → (h', w', 3) uint8 on the CPU, h', w' ≤ max_side."""
        x = latent.float()
        image = torch.einsum('oc,chw->ohw', self.weight.to(x.device), x) + self.bias.to(x.device)[:, None, None]
        factor = max(1, -(-max(image.shape[1:]) // self.max_side))
        if factor > 1:
            image = F.avg_pool2d(image[None], factor, ceil_mode=True)[0]
        return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu()

    def png(self, latent: torch.Tensor) -> bytes:
        return png_bytes(self.rgb(latent).numpy())
