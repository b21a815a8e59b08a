"""How much a representation still moves under the transformation the penalty targets (for
`study.first_order`; the evaluation scripts report the same ratio in `--conditional-variance`'s
fields), and the seeded test subsets the measures use.

With z_ik the unit representation of test image i under fresh draw k, the measure is
mean_i tr Var_k(z_ik) / mean_k tr Var_i(z_ik) (both unbiased): 0 for an encoder that ignores the
transformation, about 1 for one that sees only it. Lower is more invariant.
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
    """The ratio, ``within`` and ``across`` in one pass: ``draws(batch)`` returns K image
    tensors, the k-th with the k-th fresh draw of every image in the batch."""
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
