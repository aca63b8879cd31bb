"""Distribution and prompt-following metrics over feature vectors (float64 (N, D) arrays).

  frechet_distance     FD between Gaussians fitted to two sets (as FID, in any feature space)
  kid                  KID: unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3, averaged
                       over random equal-size subsets (Binkowski et al. 2018)
  precision_recall     k-NN manifold precision and recall (Kynkaanniemi et al. 2019)
  per_prompt_diversity mean pairwise distance between the samples of one prompt, averaged over prompts
  target_ranks         rank of a given reference row among all references by distance to a sample
  derangement          the mismatched-prompt control's pairing (no index keeps its own target)
"""

from __future__ import annotations

import numpy as np


def _sqrtm_trace(a: np.ndarray, b: np.ndarray) -> float:
    """tr sqrt(A B) for symmetric PSD A, B: sqrt(A) B sqrt(A) is symmetric PSD with the same eigenvalues
    as A B, so a symmetric eigensolver suffices (no complex sqrtm)."""
    wa, va = np.linalg.eigh(a)
    root_a = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    w = np.linalg.eigvalsh(root_a @ b @ root_a)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    mx, my = x.mean(axis=0), y.mean(axis=0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    return float(((mx - my) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2.0 * _sqrtm_trace(cx, cy))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(x: np.ndarray, y: np.ndarray, subsets: int = 50, subset_size: int = 500, seed: int = 0) -> float:
    """Mean unbiased MMD^2 over `subsets` random subsets of min(subset_size, len) rows of each set."""
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    vals = [_mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
            for _ in range(subsets)]
    return float(np.mean(vals))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(d, 0.0, None)


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row."""
    d = _sq_dists(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the row itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """precision: share of fakes inside some real's k-NN ball; recall: share of reals inside some
    fake's k-NN ball."""
    r_real, r_fake = _knn_radii(real, k), _knn_radii(fake, k)
    d = _sq_dists(fake, real)  # (fake, real)
    precision = float((d <= r_real[None, :]).any(axis=1).mean())
    recall = float((d <= r_fake[:, None]).any(axis=0).mean())
    return precision, recall


def per_prompt_diversity(features: np.ndarray, prompts: int, seeds: int) -> float:
    """features: (prompts*seeds, D), prompt-major. Mean Euclidean distance over distinct seed pairs."""
    if seeds < 2 or len(features) != prompts * seeds:
        raise ValueError("diversity needs >= 2 seeds per prompt and prompt-major rows")
    f = features.reshape(prompts, seeds, -1)
    total = 0.0
    for p in range(prompts):
        total += np.sqrt(_sq_dists(f[p], f[p])).sum() / (seeds * (seeds - 1))
    return total / prompts


def target_ranks(samples: np.ndarray, references: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of references[targets[i]] among all references by Euclidean distance to samples[i]
    (1 = the nearest; ties count in the target's favour)."""
    d = _sq_dists(samples, references)
    own = d[np.arange(len(samples)), targets]
    return 1 + (d < own[:, None]).sum(axis=1)


def rank_summary(ranks: np.ndarray, top: int = 10) -> dict:
    return {f"top{top}": float((ranks <= top).mean()), "median": float(np.median(ranks)),
            "top1": float((ranks <= 1).mean())}


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (a shifted shuffle: i -> order[(pos(i)+1) mod n])."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out
