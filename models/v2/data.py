"""The v2 training set in memory (made by models/v2/prepare.py + `models.v2.text embed`): uint8 images,
sampling weights and the full sentence encoder's embedding of every stored caption variant."""

from __future__ import annotations

import os

import numpy as np
import torch


class V2Data:
    def __init__(self, data_dir: str, size: int = 64):
        with np.load(os.path.join(data_dir, f"images{size}.npz")) as z:
            self.images = z["images"]  # (N, S, S, 3) uint8, converted per batch
            w = z["weights"].astype(np.float64)
        self.p = w / w.sum()
        path = os.path.join(data_dir, "text-embeddings.npy")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} missing: run `python -m models.v2.text embed` first")
        self.text = np.load(path)  # (N, VARIANTS, D) float16
        if len(self.text) != len(self.images):
            raise ValueError(f"{path} has {len(self.text)} rows for {len(self.images)} images: re-run embed")

        # torch views of both (no copy); to() moves them onto a GPU once, so batches are gathered there
        self.images_t, self.text_t = torch.from_numpy(self.images), torch.from_numpy(self.text)

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: str) -> V2Data:
        """Keeps the images (uint8, ~130 MB at 64 px) and text vectors (fp16) on `device`."""
        self.images_t, self.text_t = self.images_t.to(device), self.text_t.to(device)
        return self

    def batch(self, rng: np.random.Generator, batch: int, empty_p: float = 0.1):
        """Images (B,3,S,S) in [-1, 1] and text vectors (B, D), a random caption variant each; a share
        empty_p of the rows is the empty prompt (all zeros) for classifier-free guidance. The draws come
        from `rng` (NumPy, on the CPU) wherever the data lives, so a batch is the same on CPU and GPU."""
        idx = rng.choice(len(self), size=batch, p=self.p)
        variant = rng.integers(0, self.text.shape[1], size=batch)
        empty = rng.random(batch) < empty_p
        on = self.images_t.device
        idx_t, variant_t = torch.from_numpy(idx).to(on), torch.from_numpy(variant).to(on)
        text = self.text_t[idx_t, variant_t].float()
        text[torch.from_numpy(empty).to(on)] = 0.0
        x = self.images_t[idx_t].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        return x, text
