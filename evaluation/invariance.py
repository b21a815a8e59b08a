"""How much a representation still moves under the transformation the penalty targets.

For each test image i and K fresh transformation draws k, let z_ik be the L2-normalised
representation. The measure is

    mean_i tr Var_k(z_ik)  /  mean_k tr Var_i(z_ik)

the spread of one image's representations across draws over the spread across images under one
draw (both unbiased, summed over dimensions). It is 0 for an encoder that ignores the
transformation and about 1 for one that sees nothing but the transformation (when each image has
its own draws, the two variances then estimate the same quantity). Lower is more invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def invariance_measure(
    encoder: nn.Module,
    batches: Iterable[Tensor],
    draws: Callable[[Tensor], list[Tensor]],
    device: torch.device,
) -> dict[str, float]:
    """Stream the test set once: ``draws(batch)`` returns K images tensors, the k-th made with
    the k-th fresh transformation draw of every image in the batch. Returns the ratio with its
    numerator (``within``) and denominator (``across``)."""
    was_training = encoder.training
    encoder.eval()
    within_total = torch.zeros((), dtype=torch.float64, device=device)
    per_draw_sum = per_draw_sq = None
    n = 0
    try:
        for batch in batches:
            views = draws(batch.to(device))
            if len(views) < 2:
                raise ValueError("the invariance measure needs at least 2 draws per image")
            z = torch.stack([F.normalize(encoder(v).double(), dim=1) for v in views])  # (K, B, d)
            within_total += z.var(dim=0).sum()
            if per_draw_sum is None:
                per_draw_sum, per_draw_sq = z.sum(1), z.pow(2).sum((1, 2))
            else:
                per_draw_sum += z.sum(1)
                per_draw_sq += z.pow(2).sum((1, 2))
            n += z.shape[1]
    finally:
        encoder.train(was_training)
    if n < 2:
        raise ValueError("the invariance measure needs at least 2 test images")
    within = within_total / n
    across = ((per_draw_sq - per_draw_sum.pow(2).sum(-1) / n) / (n - 1)).mean()
    return {
        "invariance": (within / across).item(),
        "within": within.item(),
        "across": across.item(),
    }


def seeded_rows(n: int, k: int, seed: int) -> torch.Tensor:
    """``min(k, n)`` of the row indices 0..n-1, chosen at random by ``seed``, in order."""
    if n <= k:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:k].sort().values


def seeded_subset(split, max_images: int, seed: int):
    """At most ``max_images`` rows of ``split`` (anything with ``subset``), a random subset in
    the split's order, chosen by ``seed``; the split itself when it is no larger."""
    if len(split) <= max_images:
        return split
    return split.subset(seeded_rows(len(split), max_images, seed))


def measure_invariance(
    encoder: nn.Module,
    split,
    views,
    num_draws: int,
    *,
    max_images: int,
    seed: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> dict[str, float]:
    """`invariance_measure` on at most ``max_images`` images of ``split`` (a ``seed``-ed random
    subset; anything with ``subset`` and ``batches``), with ``views.nuisance_draws``: the draws
    of the nuisance the penalty differentiates (colour distortion after one crop and flip, or
    Spirograph's transformation parameters). Adds the draws and images used."""
    split = seeded_subset(split, max_images, seed)
    measured = invariance_measure(
        encoder,
        split.batches(batch_size, num_workers),
        lambda batch: views.nuisance_draws(batch, num_draws),
        device,
    )
    return {**measured, "draws": num_draws, "images": len(split)}
