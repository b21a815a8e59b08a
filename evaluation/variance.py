"""Conditional variance, the paper's invariance measure, and the authors' computation of it.

Per test image one crop and flip, then P draws of the colour distortion (Spirograph: of its
transformation); with ẑ_ip the unit representation of draw p of image i and one Rademacher ε_i
per image, conditional variance = mean_i Var_p(ε_iᵀ ẑ_ip), unbiased and absolute. Its expectation
over ε, ``trace`` = mean_i tr Cov_p(ẑ_ip), is what the authors plotted for Spirograph; ``across``
is the trace across images under one draw, ``ratio`` = trace / across (`evaluation.invariance`).
``theta`` redraws θ alone, ``distortion`` the whole distortion with its apply masks (natural
images only). `authors_variance` is not this computation: see docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from augmentation.views import NaturalViews, SpirographViews

AUTHORS_BATCH, AUTHORS_DRAWS = 100, 10  # the sizes of the authors' evaluation scripts


def rademacher_signs(n: int, d: int, seed: int) -> Tensor:
    """(n, d) float64 ±1 entries, from a CPU generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n, d), generator=generator).double().mul_(2).sub_(1)


def variance_terms(z: Tensor, signs: Tensor) -> dict[str, float | None]:
    """The module docstring's measures from unit ``z`` (P, N, D), P draws of N images, and
    ``signs`` (N, D); ``ratio`` is None for a constant encoder (no spread across images)."""
    if z.shape[0] < 2 or z.shape[1] < 2:
        raise ValueError(f"need at least 2 draws of at least 2 images, got {tuple(z.shape[:2])}")
    z = z.double()
    projected = torch.einsum("pnd,nd->pn", z, signs.to(z))
    trace = z.var(dim=0).sum(dim=-1).mean()
    across = z.var(dim=1).sum(dim=-1).mean()
    return {
        "conditional_variance": projected.var(dim=0).mean().item(),
        "trace": trace.item(),
        "across": across.item(),
        "ratio": (trace / across).item() if across > 0 else None,
    }


@torch.no_grad()
def unit_draws(
    encoder: nn.Module,
    batches: Iterable[Tensor],
    draws: Callable[[Tensor], list[Tensor]],
    device: torch.device,
) -> Tensor:
    """(P, N, D) float64 unit representations: ``draws(batch)`` gives the P views of every image
    of a batch; the encoder runs in eval mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = [
            torch.stack([F.normalize(encoder(v).double(), dim=1) for v in draws(b.to(device))])
            for b in batches
        ]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks, dim=1)


def conditional_variance(
    encoder: nn.Module,
    batches: Callable[[], Iterable[Tensor]],
    make_views: Callable[[], NaturalViews | SpirographViews],
    num_draws: int,
    *,
    seed: int,
    device: torch.device,
) -> dict[str, dict[str, float | None]]:
    """Both variants (``theta``; ``distortion`` on natural images) on the images of ``batches()``,
    each with fresh views from ``make_views()`` (seeded alike: the same crops and flips) and the
    same ``seed``-ed signs."""
    rendered = isinstance(make_views(), SpirographViews)
    variants = {"theta": True} if rendered else {"theta": True, "distortion": False}
    measured = {}
    for name, fixed_masks in variants.items():
        views = make_views()

        def draws(x: Tensor, views=views, fixed=fixed_masks) -> list[Tensor]:
            return views.nuisance_draws(x, num_draws, fixed_masks=fixed)

        z = unit_draws(encoder, batches(), draws, device)
        measured[name] = variance_terms(z, rademacher_signs(z.shape[1], z.shape[2], seed))
    return measured


def authors_draws(views: NaturalViews | SpirographViews, inputs: Tensor, draws: int) -> Tensor:
    """(B·P, ...) views of ``inputs`` (B images) as the authors made them: each image's crop and
    flip once (natural images), then the rows repeated P times image-major (row j is image
    j // P) and each row given its own draw of the whole distortion."""
    if isinstance(views, SpirographViews):
        return views.augment(inputs.repeat_interleave(draws, dim=0))[0]
    return views.distort(views.crop_flip(inputs).repeat_interleave(draws, dim=0))[0]


@torch.no_grad()
def authors_variance(
    encoder: nn.Module,
    batches: Iterable[Tensor],
    views: NaturalViews | SpirographViews,
    *,
    seed: int,
    device: torch.device,
    draws: int = AUTHORS_DRAWS,
) -> dict[str, float]:
    """The authors' computation as they wrote it, on ``batches`` of `AUTHORS_BATCH` images:
    `authors_draws`, encode, normalise, view as (P, B, D), unbiased variance over the first
    axis; ``trace`` sums it over D, ``projected`` takes it of εᵀẑ with one Rademacher ε per
    column (seeded by ``seed``); both are averaged over columns and batches."""
    was_training = encoder.training
    encoder.eval()
    projected_sum = trace_sum = 0.0
    columns = 0
    generator = torch.Generator().manual_seed(seed)
    try:
        for batch in batches:
            b = batch.shape[0]
            z = F.normalize(encoder(authors_draws(views, batch.to(device), draws)).double(), dim=1)
            z = z.view(draws, b, -1)
            signs = torch.randint(0, 2, z.shape[1:], generator=generator).double() * 2 - 1
            projected = (z * signs.to(z.device)).sum(dim=-1)  # (P, B)
            projected_sum += projected.var(dim=0).sum().item()
            trace_sum += z.var(dim=0).sum().item()
            columns += b
    finally:
        encoder.train(was_training)
    return {
        "projected": projected_sum / columns,
        "trace": trace_sum / columns,
        "batch": AUTHORS_BATCH,
        "draws": draws,
    }
