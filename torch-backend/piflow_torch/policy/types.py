"""The network outputs a policy is built from (the golden layout, u-space at (x_src, σ_src))."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GmOutput:
    """GM student output: ``means_u`` (B,K,C,H,W), ``logweights`` (B,K,1,H,W), ``logstds`` (B,1,1,1,1)."""

    means_u: torch.Tensor
    logweights: torch.Tensor
    logstds: torch.Tensor
    type: str = "gm"

    @property
    def k(self) -> int:
        return self.means_u.shape[1]

    def to(self, dtype: torch.dtype) -> GmOutput:
        return GmOutput(self.means_u.to(dtype), self.logweights.to(dtype), self.logstds.to(dtype))


@dataclass(frozen=True)
class DxOutput:
    """DX student output: ``grid_u`` (B,N,C,H,W), N x0 nodes in u-space."""

    grid_u: torch.Tensor
    type: str = "dx"

    @property
    def n(self) -> int:
        return self.grid_u.shape[1]

    def to(self, dtype: torch.dtype) -> DxOutput:
        return DxOutput(self.grid_u.to(dtype))


PolicyOutput = GmOutput | DxOutput
