"""Python twin of @piflow/policy `randn` (policy/NOISE.md): Philox4x32-10 + a Box-Muller transform built
only from + - * / and sqrt, so a seed gives bit-identical float64 noise here, in TypeScript and in the
browser. Vectorised with NumPy: uint64 products for Philox, one float64 ufunc per operation (NumPy never
contracts a*b + c into an FMA), in exactly the order the spec writes.
"""

from __future__ import annotations

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
SQRT2 = 1.4142135623730951
LN2 = 0.6931471805599453
HALF_PI = 1.5707963267948966


def philox4x32_10(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """counter (N,4) uint32-valued -> (N,4) output words (as uint64 holding uint32 values)."""
    c0, c1, c2, c3 = (counter[:, i].astype(np.uint64) for i in range(4))
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(10):
        if r > 0:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & MASK32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & MASK32
    return np.stack([c0, c1, c2, c3], axis=1)


def ln_uniform(a: np.ndarray) -> np.ndarray:
    """ln((a + 0.5) 2^-32) for uint32 a, by the spec's series (no library log)."""
    t = (a.astype(np.uint64) * np.uint64(2) + np.uint64(1)).astype(np.float64)  # exact, < 2^33
    mant, ex = np.frexp(t)  # t = mant * 2^ex, mant in [0.5, 1): exact
    e = (ex - 1).astype(np.float64)
    m = mant * 2.0  # = t / 2^e, exact
    big = m > SQRT2
    m = np.where(big, m / 2.0, m)
    e = np.where(big, e + 1.0, e)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = np.full_like(z, 1.0 / 23.0)
    for k in range(10, -1, -1):
        p = p * z
        p = p + 1.0 / (2 * k + 1)
    return (e - 33.0) * LN2 + (2.0 * s) * p


def _sin_cos_small(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = phi * phi
    s = np.ones_like(phi)
    c = np.ones_like(phi)
    for k in range(9, 0, -1):
        s = 1.0 - (z / float((2 * k) * (2 * k + 1))) * s
        c = 1.0 - (z / float((2 * k - 1) * (2 * k))) * c
    return phi * s, c


def box_muller(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    radius = np.sqrt(-2.0 * ln_uniform(a))
    b = b.astype(np.uint64)
    q = (b >> np.uint64(30)).astype(np.int64)
    f = ((b & np.uint64(0x3FFFFFFF)).astype(np.float64) + 0.5) / float(2**30)
    low = f < 0.5
    s_, c_ = _sin_cos_small(np.where(low, f * HALF_PI, (1.0 - f) * HALF_PI))
    sin_phi, cos_phi = np.where(low, s_, c_), np.where(low, c_, s_)
    sin_t = np.select([q == 0, q == 1, q == 2], [sin_phi, cos_phi, -sin_phi], -cos_phi)
    cos_t = np.select([q == 0, q == 1, q == 2], [cos_phi, -sin_phi, -cos_phi], sin_phi)
    return radius * cos_t, radius * sin_t


def randn(n: int, seed: int, offset: int = 0) -> np.ndarray:
    """Normals offset ... offset+n-1 of stream `seed` (float64). Image i of a request with seed s uses
    randn(C*H*W, (s + i) mod 2^32) in row-major (C,H,W) order."""
    if not (0 <= seed < 2**32) or offset < 0 or n < 0:
        raise ValueError("seed must be in [0, 2^32), offset and n >= 0")
    if n == 0:
        return np.zeros(0)
    first, last = offset // 4, (offset + n - 1) // 4
    blocks = np.arange(first, last + 1, dtype=np.uint64)
    counter = np.stack([blocks & MASK32, blocks >> np.uint64(32), np.zeros_like(blocks), np.zeros_like(blocks)], 1)
    w = philox4x32_10(counter, (seed, 0))
    z0, z1 = box_muller(w[:, 0], w[:, 1])
    z2, z3 = box_muller(w[:, 2], w[:, 3])
    flat = np.stack([z0, z1, z2, z3], axis=1).reshape(-1)
    start = offset - first * 4
    return flat[start : start + n]
