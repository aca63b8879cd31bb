"""A synthetic data set in the v2 training format (models/v2/data.py): random uint8 images, uniform
sampling weights and random unit caption vectors. For checking the trainers where the real set cannot be
built (the device machine has neither the art packages nor MiniLM), never for training a model.

  python -m models.v2.synthetic OUT_DIR [--images 64]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from models.v2.prepare import VARIANTS
from models.v2.text import DIM


def write_synthetic(out_dir: str, images: int = 64, size: int = 64, seed: int = 0) -> str:
    """Writes images{size}.npz and text-embeddings.npy under out_dir and returns out_dir."""
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    pixels = rng.integers(0, 256, size=(images, size, size, 3), dtype=np.uint8)
    np.savez(os.path.join(out_dir, f"images{size}.npz"), images=pixels, weights=np.ones(images))
    vectors = rng.standard_normal((images, VARIANTS, DIM))
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    np.save(os.path.join(out_dir, "text-embeddings.npy"), vectors.astype(np.float16))
    return out_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--images", type=int, default=64)
    a = p.parse_args(argv)
    print(write_synthetic(a.out, a.images))


if __name__ == "__main__":
    main()
