"""Seeded standard normals, bit-identical to ``@piflow/policy`` ``randn`` (policy/NOISE.md).

Philox4x32-10 exactly as Random123 on int64 tensors holding uint32 words, then the Box–Muller
transform of NOISE.md §3 evaluated in float64 with +, −, ×, ÷ and sqrt only, one torch operation per
line of the specification (no fused multiply-add, no library log/sin/cos, whose last bits differ
between runtimes). The square root is NumPy's: torch's vectorised float64 ``sqrt`` on CPU (AVX-512
builds) is not correctly rounded (about 1 % of values 1 ulp off, caught by the reference test), while
NumPy's is IEEE-754's. The numbers are computed on the CPU, where every one of those float64 kernels is
correctly rounded (CUDA's division by a scalar multiplies by the reciprocal instead), and then moved
to the requested device: C·H·W values once per image, nothing next to a transformer forward.

Image ``i`` of a request with seed ``s`` uses ``randn((1, C, H, W), (s + i) mod 2**32)``:
:func:`request_seeds` and :func:`randn_batch` apply that rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .errors import PolicyOptionError

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF
# The exact binary64 literals NOISE.md fixes (not math.sqrt(2) etc., although they are equal).
SQRT2 = 1.4142135623730951
LN2 = 0.6931471805599453
HALF_PI = 1.5707963267948966

MAX_INDEX = 2**53
"""Largest valid ``offset + count``: stream indices stay exact integers (NOISE.md §1)."""
MAX_COUNT = 2**31 - 1
"""Largest number of normals one call makes (the policy module's MAX_ELEMENTS)."""


def _mulhilo(m: int, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of the 64-bit product m·c (uint32 operands), without int64 overflow."""
    low_part = m * (c & 0xFFFF)  # < 2^48
    high_part = m * (c >> 16)  # < 2^48
    hi = (high_part + (low_part >> 16)) >> 16
    lo = (((high_part & 0xFFFF) << 16) + low_part) & MASK32
    return hi, lo


def philox4x32(counter: Sequence[torch.Tensor], key0: int, key1: int) -> list[torch.Tensor]:
    """Philox4x32-10 (Random123 ``philox4x32_R(10, ctr, key)``) on int64 tensors of uint32 words.

    Args:
        counter: four int64 tensors of one shape, each word in [0, 2**32)
        key0, key1: the key words
    Returns:
        the four output words, int64 tensors of the counter's shape
    """
    c0, c1, c2, c3 = counter
    k0, k1 = key0 & MASK32, key1 & MASK32
    for round_index in range(10):
        if round_index > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return [c0, c1, c2, c3]


def ln_uniform(a: torch.Tensor) -> torch.Tensor:
    """ln((a + 0.5)·2⁻³²) for uint32 words ``a`` (int64 tensor), float64, NOISE.md §3."""
    t = (2 * a + 1).to(torch.float64)  # odd integer < 2^33: exact in float64
    mantissa, exponent = torch.frexp(t)  # t = mantissa·2^exponent, mantissa ∈ [0.5, 1): exact
    m = mantissa * 2.0  # ∈ [1, 2), exact
    e = (exponent - 1).to(torch.float64)
    above = m > SQRT2
    m = torch.where(above, m / 2.0, m)
    e = torch.where(above, e + 1.0, e)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = torch.full_like(z, 1.0 / 23.0)
    for k in range(10, -1, -1):
        p = p * z
        p = p + 1.0 / float(2 * k + 1)
    return (e - 33.0) * LN2 + (2.0 * s) * p


def _sin_cos_small(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sin φ and cos φ for φ ∈ (0, π/4] by the nested series of NOISE.md §3."""
    z = phi * phi
    s = torch.ones_like(phi)
    c = torch.ones_like(phi)
    for k in range(9, 0, -1):
        s = 1.0 - (z / float((2 * k) * (2 * k + 1))) * s
        c = 1.0 - (z / float((2 * k - 1) * (2 * k))) * c
    return phi * s, c


def box_muller(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two standard normals per pair of uint32 words (NOISE.md §3): (radius·cos θ, radius·sin θ)."""
    radius = torch.from_numpy(np.sqrt((-2.0 * ln_uniform(a)).numpy()))  # correctly rounded (module doc)
    quadrant = b >> 30
    f = ((b & 0x3FFFFFFF).to(torch.float64) + 0.5) / 1073741824.0  # ∈ (0, 1), exact; never 0.5
    low = f < 0.5
    sin_phi, cos_phi = _sin_cos_small(torch.where(low, f, 1.0 - f) * HALF_PI)
    sin_phi, cos_phi = torch.where(low, sin_phi, cos_phi), torch.where(low, cos_phi, sin_phi)
    # θ = (quadrant + f)·π/2: rotate by quadrant·π/2 with exact sign flips
    sin_t = torch.where(
        quadrant == 0, sin_phi, torch.where(quadrant == 1, cos_phi, torch.where(quadrant == 2, -sin_phi, -cos_phi))
    )
    cos_t = torch.where(
        quadrant == 0, cos_phi, torch.where(quadrant == 1, -sin_phi, torch.where(quadrant == 2, -cos_phi, sin_phi))
    )
    return radius * cos_t, radius * sin_t


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise PolicyOptionError(f"randn: seed must be an integer in [0, 2^32), got {seed!r}")
    return seed


def randn(
    shape: Sequence[int] | torch.Size,
    seed: int,
    offset: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normals number ``offset … offset + numel − 1`` of the stream ``seed``, row-major.

    float64 holds the exact NOISE.md values; float32 (and float16 / bfloat16) their round-to-nearest-even
    rounding of those, so every path that follows NOISE.md gets the same bits.

    Raises:
        PolicyOptionError: seed outside [0, 2^32), offset negative, the count over 2^31 − 1 or
            offset + count over 2^53, a negative dimension or a non-floating dtype
    """
    seed = _check_seed(seed)
    dims = tuple(shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise PolicyOptionError(f"randn: shape must be non-negative integers, got {dims!r}")
    count = math.prod(dims)
    if count > MAX_COUNT:
        raise PolicyOptionError(f"randn: {count} values requested, at most {MAX_COUNT} per call")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or offset + count > MAX_INDEX:
        raise PolicyOptionError(f"randn: offset must be a non-negative integer below 2^53, got {offset!r}")
    if not dtype.is_floating_point:
        raise PolicyOptionError(f"randn: dtype must be a floating-point dtype, got {dtype}")
    if count == 0:
        return torch.empty(dims, dtype=dtype, device=device)
    first_block = offset // 4
    last_block = (offset + count - 1) // 4
    block = torch.arange(first_block, last_block + 1, dtype=torch.int64)
    zeros = torch.zeros_like(block)
    w0, w1, w2, w3 = philox4x32([block & MASK32, block >> 32, zeros, zeros], seed, 0)
    z0, z1 = box_muller(w0, w1)
    z2, z3 = box_muller(w2, w3)
    lanes = torch.stack([z0, z1, z2, z3], dim=1).reshape(-1)
    start = offset - first_block * 4
    values = lanes[start : start + count].reshape(dims)
    return values.to(dtype=dtype, device=device)


def request_seeds(seed: int, count: int) -> list[int]:
    """Seeds of the ``count`` images of one request with ``seed``: (seed + i) mod 2^32 (NOISE.md §1)."""
    seed = _check_seed(seed)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise PolicyOptionError(f"count must be a positive integer, got {count!r}")
    return [(seed + i) % 2**32 for i in range(count)]


def randn_batch(
    seeds: Sequence[int],
    image_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Initial latents (B, *image_shape) where sample b is the whole stream of ``seeds[b]`` from 0.

    A batch that mixes requests stacks each image's own stream, so batching never changes an image.
    """
    if len(seeds) == 0:
        raise PolicyOptionError("randn_batch: at least one seed is needed")
    return torch.stack([randn(tuple(image_shape), s, dtype=dtype, device=device) for s in seeds])
