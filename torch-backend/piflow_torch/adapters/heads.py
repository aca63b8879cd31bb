"""The GM output layer of a π-Flow adapter: it takes the base transformer's final norm's place.

Released format (fixtures/official/README.md): ``norm_out`` (an AdaLayerNormContinuous, weights from the
adapter), ``proj_out_means`` Linear(inner, K·C_tok), ``proj_out_logweights`` Linear(inner, K·p²) then
log-softmax over K, ``proj_out_logstds`` = [SiLU → Linear]·L on the conditioning embedding ``temb`` (one
log-std per image), or a constant log-std. Installed as the base's ``norm_out`` — the one module that
sees both the last hidden states and ``temb`` — with the base's ``proj_out`` made an identity, so the
base's own diffusers ``forward`` runs unchanged and returns this layer's packed output.
"""

from __future__ import annotations

import torch
from torch import nn

# adapter key prefix → where that module lives in the student (under the base's `norm_out`)
ADAPTER_HEAD_PREFIXES = {
    "norm_out.": "norm_out.norm.",
    "proj_out_means.": "norm_out.means.",
    "proj_out_logweights.": "norm_out.logweights.",
    "proj_out_logstds.": "norm_out.logstds.",
}


def logstd_mlp(inner_dim: int, hidden_dim: int, num_layers: int) -> nn.Sequential:
    """[SiLU → Linear(·, hidden)]·(L−1) → SiLU → Linear(·, 1), indexed as the adapter's keys are."""
    layers: list[nn.Module] = []
    width = inner_dim
    for _ in range(num_layers - 1):
        layers += [nn.SiLU(), nn.Linear(width, hidden_dim)]
        width = hidden_dim
    layers += [nn.SiLU(), nn.Linear(width, 1)]
    return nn.Sequential(*layers)


class GMOutputLayer(nn.Module):
    """norm_out + GM heads; forward(hidden (B,S,D), temb (B,D)) → (B, S, K·C_tok + K·p² + 1) packed.

    The last channel carries the per-image log-std broadcast over tokens (one scalar each; 1/(K·C_tok)
    of the output), so the layer returns one tensor as the base's ``proj_out`` slot expects.
    """

    def __init__(
        self,
        norm: nn.Module,
        *,
        inner_dim: int,
        k: int,
        token_channels: int,
        logweights_channels: int,
        constant_logstd: float | None,
        logstd_inner_dim: int,
        logstd_layers: int,
    ):
        super().__init__()
        self.norm = norm
        self.k = k
        self.token_channels = token_channels
        self.logweights_channels = logweights_channels
        self.means = nn.Linear(inner_dim, k * token_channels)
        self.logweights = nn.Linear(inner_dim, k * logweights_channels)
        self.constant_logstd = constant_logstd
        self.logstds = None if constant_logstd is not None else logstd_mlp(inner_dim, logstd_inner_dim, logstd_layers)

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        normed = self.norm(hidden_states, temb)
        batch, seq, _ = normed.shape
        if self.logstds is None:
            logstd = normed.new_full((batch, 1), float(self.constant_logstd))
        else:
            logstd = self.logstds(temb)
        return torch.cat([self.means(normed), self.logweights(normed), logstd[:, None, :].expand(batch, seq, 1)], dim=-1)

    def split(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means (B,S,K,C_tok), logweights (B,S,K,p²) log-softmaxed over K, logstds (B,1,1,1)), in the
        packed tensor's dtype (the official model log-softmaxes in its own dtype too)."""
        batch, seq, _ = packed.shape
        k, c, p2 = self.k, self.token_channels, self.logweights_channels
        means = packed[..., : k * c].reshape(batch, seq, k, c)
        logweights = packed[..., k * c : k * (c + p2)].reshape(batch, seq, k, p2).log_softmax(dim=-2)
        logstds = packed[:, :1, -1].reshape(batch, 1, 1, 1)
        return means, logweights, logstds
