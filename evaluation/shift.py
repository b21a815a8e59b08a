"""Robustness to a transformation shifted at test time (the paper's section 6.3 figures): the
probe is fitted as usual, only the test images change. Natural images: colour jitter alone at
strength s on every plain test image (skipped at s = 0, where the YIQ hue rotation is not quite
the identity); Spirograph: renderings from shifted transformation ranges."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import Tensor, nn

from augmentation.spirograph import TRANSFORM_BOUNDS, TRANSFORM_PARAMS
from augmentation.views import NaturalViews, SpirographViews, to_unit_float
from evaluation.encoding import encode
from evaluation.probe import LinearFit, evaluate_linear, headline_scores

# The paper's sweeps, and the project's for the widenings (the paper gives no list for them).
DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 0.875)
SPIROGRAPH_SHIFTS = {
    "background_mean": (0.0, 0.1, 0.2, 0.3, 0.4),
    "background_range": (0.0, 0.1, 0.2, 0.3, 0.4),
    "h_mean": (-0.5, -0.25, 0.0, 0.25, 0.5),
    "h_range": (0.0, 0.125, 0.25, 0.375, 0.5),
}
_BACKGROUND = [TRANSFORM_PARAMS.index(name) for name in ("rback", "gback", "bback")]
_H = [TRANSFORM_PARAMS.index("h")]


def shifted_bounds(kind: str, amount: float) -> tuple[tuple[float, float], ...]:
    """Spirograph's ranges with the background colours' (``background_*``) or h's (``h_*``) moved
    by ``amount`` (``*_mean``) or widened by it each side (``*_range``), cut to colours in [0, 1]
    and h ≥ 0. ValueError when nothing of a range is left."""
    if kind not in SPIROGRAPH_SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; one of {', '.join(SPIROGRAPH_SHIFTS)}")
    indices, valid = (_H, (0.0, float("inf"))) if kind.startswith("h") else (_BACKGROUND, (0, 1))
    bounds = list(TRANSFORM_BOUNDS)
    for i in indices:
        lo, hi = bounds[i]
        lo, hi = (lo + amount, hi + amount) if kind.endswith("mean") else (lo - amount, hi + amount)
        lo, hi = max(lo, valid[0]), min(hi, valid[1])
        if lo >= hi:
            name = TRANSFORM_PARAMS[i]
            raise ValueError(
                f"--shift-{kind.replace('_', '-')} {amount:g} leaves no valid range of {name} "
                f"(it must stay within [{valid[0]:g}, {valid[1]:g}]); give a value nearer 0"
            )
        bounds[i] = (lo, hi)
    return tuple(bounds)


def jitter_every_image(
    images: Tensor, dataset: str, strength: float, generator: torch.Generator
) -> Tensor:
    """Normalised (B, 3, H, W) test images with colour jitter of ``strength`` applied to every
    image (one draw each from ``generator``): the natural-image shift."""
    views = NaturalViews(dataset, images.shape[-1], strength, generator=generator)
    x = to_unit_float(images)
    if strength == 0:
        return views.plain(x)
    every = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    return views.distort(x, masks=(every, ~every))[0]


def shifted_renderings(
    params: Tensor, bounds: tuple[tuple[float, float], ...], generator: torch.Generator
) -> Tensor:
    """(B, 3, 32, 32) Spirograph test images rendered from one draw each of the transformation
    parameters on ``bounds``: the Spirograph shift."""
    return SpirographViews(generator=generator, bounds=bounds).augment(params)[0]


def shift_scores(
    encoder: nn.Module,
    batches: Callable[[], Iterable[Tensor]],
    encoded_test: tuple[Tensor, Tensor],
    fit: LinearFit,
    *,
    dataset: str,
    kind: str,
    amounts: list[float],
    plain_probe: bool,
    seed: int,
    device: torch.device,
) -> list[dict[str, float]]:
    """The probe ``fit`` scored on the test images of ``batches()`` under each ``amount`` of
    ``kind`` (colour strengths, or a `SPIROGRAPH_SHIFTS` key), one draw per image from a generator
    reseeded with ``seed`` for every amount, so an image's draw is moved, not redrawn.
    ``encoded_test`` (features, targets) is reused at strength 0 when the probe was plain."""
    test_x, test_y = encoded_test
    task = "regression" if dataset == "spirograph" else "classification"
    scores = []
    for amount in amounts:
        generator = torch.Generator(device).manual_seed(seed)
        if dataset == "spirograph":
            shifted = partial(
                shifted_renderings, bounds=shifted_bounds(kind, amount), generator=generator
            )
            features = encode(encoder, batches(), shifted, device)
        elif amount == 0 and plain_probe:
            features = test_x  # the plain images the probe was scored on
        else:
            shifted = partial(
                jitter_every_image, dataset=dataset, strength=amount, generator=generator
            )
            features = encode(encoder, batches(), shifted, device)
        result = evaluate_linear(fit, features, test_y, task)
        scores.append({"amount": amount, **headline_scores(result)})
    return scores
