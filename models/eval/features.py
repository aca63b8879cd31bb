"""Three feature spaces that owe nothing to the project's own models or classifier, for FD / KID /
precision-recall / diversity (models/eval/independent.py):

  pooled   8x8 area-pooled RGB (192 values): colour layout, the coarse shape of an emoji
  pca      the top principal components of the reference set's pixels at the evaluation size
  cnn      a randomly initialised, never trained CNN (weights from a fixed NumPy seed, so the same on
           every machine and torch version); random conv features are a known stand-in for learned
           ones when no pretrained network may be used

Images are uint8 (N, H, W, 3), RGB composited on white. Each space is fitted on the reference set
once (PCA basis; a centre and one scale factor per space) and then applied to every method's samples,
so the numbers of different methods are comparable. Centring on the reference mean and scaling to a mean
per-dimension variance of 1 leave FD ratios, precision/recall and diversity ratios unchanged, and keep
KID's cubic kernel (x.y/d + 1)^3 from being dominated by the features' common offset.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

POOLED_SIZE = 8
PCA_COMPONENTS = 64
CNN_SEED = 20261202
CNN_CHANNELS = (32, 64, 128, 256)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W,3) -> float32 (N,3,H,W) in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N,H,W,3) images, got {images.dtype} {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def area_resize(x: np.ndarray, size: int) -> np.ndarray:
    """(N,3,H,W) float -> (N,3,size,size) by averaging whole blocks (H must be a multiple of size, or
    size a multiple of H for nearest upscaling)."""
    h = x.shape[-1]
    if h == size:
        return x
    if h % size == 0:
        f = h // size
        return x.reshape(*x.shape[:2], size, f, size, f).mean(axis=(3, 5))
    if size % h == 0:
        f = size // h
        return x.repeat(f, axis=2).repeat(f, axis=3)
    raise ValueError(f"cannot resize {h} px to {size} px by whole blocks")


def pooled_pixels(images: np.ndarray, size: int = POOLED_SIZE) -> np.ndarray:
    """8x8 area-pooled RGB in [0, 1], flattened: (N, 3*size*size) float64."""
    return area_resize(to_float(images), size).reshape(len(images), -1).astype(np.float64)


class RandomCNN:
    """Four 3x3 conv + ReLU layers (He-normal weights from a NumPy seed), 2x2 average pooling between
    them, global average and max pooling of the last two layers: (N, 2*(128+256)) features."""

    def __init__(self, seed: int = CNN_SEED, channels: tuple = CNN_CHANNELS):
        rng = np.random.default_rng(seed)
        self.weights, cin = [], 3
        for cout in channels:
            w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
            self.weights.append(torch.from_numpy(w.astype(np.float32)))
            cin = cout

    @torch.no_grad()
    def __call__(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        out = []
        for i in range(0, len(x), batch):
            h = torch.from_numpy(x[i : i + batch] * 2.0 - 1.0)
            pooled = []
            for j, w in enumerate(self.weights):
                h = F.relu(F.conv2d(h, w, padding=1))
                if j >= len(self.weights) - 2:
                    pooled += [h.mean(dim=(2, 3)), h.amax(dim=(2, 3))]
                if j < len(self.weights) - 1:
                    h = F.avg_pool2d(h, 2)
            out.append(torch.cat(pooled, dim=1).double().numpy())
        return np.concatenate(out)


class FeatureSpaces:
    """The three spaces, fitted on reference images (uint8 (N,H,W,3)) at eval_size pixels."""

    names = ("pooled", "pca", "cnn")

    def __init__(self, reference: np.ndarray, eval_size: int = 32, components: int = PCA_COMPONENTS):
        self.eval_size = eval_size
        self.cnn = RandomCNN()
        flat = self._pixels(area_resize(to_float(reference), eval_size))
        self.pca_mean = flat.mean(axis=0)
        # principal axes from the SVD of the centred reference pixels (rows of vt)
        _, _, vt = np.linalg.svd(flat - self.pca_mean, full_matrices=False)
        self.pca_basis = vt[:components].T
        raw = self.raw(reference)
        self.centre = {name: raw[name].mean(axis=0) for name in self.names}
        self.scale = {name: 1.0 / np.sqrt(raw[name].var(axis=0).mean()) for name in self.names}

    @staticmethod
    def _pixels(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).astype(np.float64)

    def raw(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = area_resize(to_float(images), self.eval_size)
        return {
            "pooled": pooled_pixels(images),
            "pca": (self._pixels(x) - self.pca_mean) @ self.pca_basis,
            "cnn": self.cnn(x),
        }

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Features of every space, centred on the reference's mean and scaled by its factor."""
        return {name: (f - self.centre[name]) * self.scale[name] for name, f in self.raw(images).items()}
