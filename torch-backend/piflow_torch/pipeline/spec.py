"""What one generate request asks for, once validated (server/requests.py builds it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationSpec:
    """A validated, normalised request (server/requests.py builds it; every field is in range)."""

    prompt: str
    seed: int
    count: int
    width: int
    height: int
    nfe: int
    guidance: float | None
    preview: bool

    def batch_key(self) -> tuple[int, int, int]:
        """Requests with equal keys can share forwards: same latent shape and the same NFE schedule."""
        return (self.width, self.height, self.nfe)
