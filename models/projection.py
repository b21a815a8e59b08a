"""The projection head g(h) on which NT-Xent is computed (spec section 4)."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """(B, d) -> (B, out_dim): Linear → BN → ReLU → Linear → BN (no affine: it only standardises
    the projections before the cosine similarity); both linears bias-free."""

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(in_dim, in_dim, bias=False),
            nn.BatchNorm1d(in_dim),
            nn.ReLU(),
            nn.Linear(in_dim, out_dim, bias=False),
            nn.BatchNorm1d(out_dim, affine=False),
        )
        self.in_dim = in_dim
        self.out_dim = out_dim
