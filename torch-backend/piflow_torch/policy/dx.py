"""DX policy, golden README §3 ``dx_velocity``, in torch on the tensors' device.

N x0 nodes over the segment ``X_n = x_src − σ_src·grid_u_n``, interpolated in raw time (``grid``:
piecewise linear, node 0 = segment end, node N−1 = segment start) or used as polynomial coefficients in
(τ_src − τ) (``polynomial``). x0_hat does not depend on x_t: a query is one weighted sum over nodes.
"""

from __future__ import annotations

import torch

from ..errors import PolicyOptionError
from ._checks import Sigma, at_least, check_latent, check_like, check_number, check_sigma, per_sample
from .shift import unwarp
from .types import DxOutput

DX_DEFAULT_EPS = 1e-4
"""eps of the official DXPolicy."""

DX_MODES = ("grid", "polynomial")


class DxPolicy:
    """The DX policy of one NFE segment, built from the network output at (x_src, σ_src).

    Args:
        output: ``DxOutput`` (grid_u (B,N,C,H,W))
        x_src: the state the network saw (B,C,H,W)
        sigma_src: a float shared by the batch or a (B,) tensor
        segment_size: the policy's segment length in raw time (an intrinsic parameter of the student)
        shift: the policy's own time shift (intrinsic too; not necessarily the sampler's)
        mode: ``grid`` or ``polynomial``
        eps: clamps σ and the segment length
    """

    type = "dx"

    def __init__(
        self,
        output: DxOutput,
        x_src: torch.Tensor,
        sigma_src: Sigma,
        *,
        segment_size: float = 1.0,
        shift: float = 1.0,
        mode: str = "grid",
        eps: float = DX_DEFAULT_EPS,
    ):
        if not isinstance(output, DxOutput):
            raise PolicyOptionError("output must be a DxOutput (grid_u)")
        if mode not in DX_MODES:
            raise PolicyOptionError(f"mode must be one of {DX_MODES}, got {mode!r}")
        x_src = check_latent("x_src", x_src)
        batch, channels, height, width = x_src.shape
        grid_u = check_latent("output.grid_u", output.grid_u, 5)
        n = grid_u.shape[1]
        if n < 1:
            raise PolicyOptionError("output.grid_u has no nodes (N = 0)")
        grid_u = check_like("output.grid_u", grid_u, (batch, n, channels, height, width), x_src)
        self.segment_size = check_number("segment_size", segment_size, 0.0, 1.0)
        self.shift = check_number("shift", shift, 0.0, open_low=True)
        self.eps = check_number("eps", eps, 0.0, 1.0, open_low=True)
        self.mode = mode
        self.n = n
        self.sigma_src = check_sigma("sigma_src", sigma_src, batch)
        self.x_src = x_src
        self.nodes_x0 = x_src.unsqueeze(1) - per_sample(self.sigma_src, 5, x_src.dtype) * grid_u
        # per-sample raw times as (B,) float64 tensors on the device (tiny)
        sigma = _as_batch(self.sigma_src, batch, x_src.device)
        self.raw_src = unwarp(sigma, self.shift)
        self.raw_dst = (self.raw_src - self.segment_size).clamp(min=0)
        self.segment_effective = (self.raw_src - self.raw_dst).clamp(min=self.eps)

    def raw_time(self, sigma: Sigma) -> Sigma:
        """τ of a noise level under the policy's shift."""
        return unwarp(sigma, self.shift)

    def _node_weights(self, sigma_t: Sigma) -> torch.Tensor:
        """(B,N) weights of the nodes in x0_hat at σ_t (golden §3 dx_velocity)."""
        batch = self.x_src.shape[0]
        tau = unwarp(_as_batch(sigma_t, batch, self.x_src.device), self.shift)
        if self.mode == "polynomial":
            powers = torch.arange(self.n, device=tau.device, dtype=tau.dtype)
            return (self.raw_src - tau).unsqueeze(1) ** powers
        if self.n == 1:
            return torch.ones(batch, 1, dtype=tau.dtype, device=tau.device)
        q = ((tau - self.raw_dst) / self.segment_effective).clamp(0, 1) * (self.n - 1)
        i = q.floor().clamp(0, self.n - 2)
        nodes = torch.arange(self.n, device=tau.device, dtype=tau.dtype)
        lower = (i + 1 - q).unsqueeze(1) * (nodes == i.unsqueeze(1))
        upper = (q - i).unsqueeze(1) * (nodes == (i + 1).unsqueeze(1))
        return lower + upper

    def x0_hat(self, x_t: torch.Tensor, sigma_t: Sigma) -> torch.Tensor:
        """x0_hat (B,C,H,W) at σ_t (x_t is only checked: DX does not depend on it)."""
        check_like("x_t", x_t, tuple(self.x_src.shape), self.x_src)
        weights = self._node_weights(sigma_t).to(self.nodes_x0.dtype)
        return torch.einsum("bn,bnchw->bchw", weights, self.nodes_x0)

    def velocity(self, x_t: torch.Tensor, sigma_t: Sigma) -> torch.Tensor:
        """u = (x_t − x0_hat) / max(σ_t, eps)."""
        x0 = self.x0_hat(x_t, sigma_t)
        return (x_t - x0) / per_sample(at_least(sigma_t, self.eps), 4, x_t.dtype)

    def step(self, x: torch.Tensor, sigma_t: float, sigma_next: float) -> torch.Tensor:
        """One Euler substep x + u·(σ_next − σ_t) with σ shared by the batch."""
        x0 = self.x0_hat(x, sigma_t)
        ratio = (sigma_next - sigma_t) / max(sigma_t, self.eps)
        return x + (x - x0) * ratio


def _as_batch(sigma: Sigma, batch: int, device: torch.device) -> torch.Tensor:
    """σ as a (B,) float64 tensor on ``device`` (a float is filled in, no host synchronisation)."""
    if isinstance(sigma, torch.Tensor):
        return sigma.to(device=device, dtype=torch.float64)
    return torch.full((batch,), float(sigma), dtype=torch.float64, device=device)
