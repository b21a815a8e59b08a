"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (spec section 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """Mean over the 2N projections of a 2N-way cross-entropy against the other view.

    Args:
        z1, z2: (N, D) projections of the two views; row i of each comes from image i.
        temperature: divides the cosine similarities.
    Returns:
        Scalar loss. The similarities are one (2N, D)·(D, 2N) product of unit vectors, so memory
        is O(N²) rather than the O(N²·D) of a broadcast cosine similarity.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 2:
        raise ValueError("NT-Xent needs at least 2 images: with one there are no negatives")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    # Row i's positive is i + N, row i + N's is i.
    targets = torch.arange(2 * n, device=z.device).roll(n)
    return F.cross_entropy(logits, targets)
