"""How much a representation says about the nuisance (the paper's section 6.3): the exact linear
regression onto θ, fitted on the training set's views, scored on the test set's against predicting
the mean. Natural images: one crop and flip, jitter on every image (no random apply or grayscale),
θ = (brightness, contrast, saturation, hue); Spirograph: its six transformation parameters."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from augmentation.spirograph import TRANSFORM_PARAMS
from augmentation.views import NaturalViews, SpirographViews
from evaluation.probe import DEFAULT_REG_WEIGHT, fit_linear

JITTER_PARAMS = ("brightness", "contrast", "saturation", "hue")
NUISANCE_REG_WEIGHT = DEFAULT_REG_WEIGHT["regression"]  # the regression probe's weight


def nuisance_views(views: NaturalViews | SpirographViews, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """(views, θ) of a batch with θ acting on every image."""
    if isinstance(views, SpirographViews):
        images, theta = views.augment(inputs)
        return images, theta
    cropped = views.crop_flip(inputs)
    every = torch.ones(cropped.shape[0], dtype=torch.bool, device=cropped.device)
    return views.distort(cropped, masks=(every, ~every))


@torch.no_grad()
def encode_with_nuisance(
    encoder: nn.Module,
    batches: Iterable[Tensor],
    views: NaturalViews | SpirographViews,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """(N, d) float32 representations of one `nuisance_views` view per image and their (N, P) θ;
    the encoder runs in eval mode."""
    was_training = encoder.training
    encoder.eval()
    features, thetas = [], []
    try:
        for batch in batches:
            images, theta = nuisance_views(views, batch.to(device))
            features.append(encoder(images).float())
            thetas.append(theta.detach().float())
    finally:
        encoder.train(was_training)
    return torch.cat(features), torch.cat(thetas)


def nuisance_prediction(
    train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], names: tuple[str, ...]
) -> dict:
    """Fit θ ≈ W·h + b on ``train`` (features, θ) in closed form and score on ``test``: each
    parameter's test MSE beside the training-mean baseline, their means, and ``relative``, the
    mean of MSE / baseline (1: nothing linear about θ; 0: θ determined)."""
    (train_x, train_t), (test_x, test_t) = train, test
    fit = fit_linear(
        train_x, train_t, train_t.shape[1], task="regression", reg_weight=NUISANCE_REG_WEIGHT
    )
    with torch.no_grad():
        predicted = fit.model(test_x.double())
    truth = test_t.double()
    mse = ((predicted - truth) ** 2).mean(dim=0)
    baseline = ((truth - train_t.double().mean(dim=0)) ** 2).mean(dim=0)
    return {
        "mse": mse.mean().item(),
        "baseline_mse": baseline.mean().item(),
        "relative": (mse / baseline).mean().item(),
        "per_param": {
            name: {"mse": m, "baseline_mse": b}
            for name, m, b in zip(names, mse.tolist(), baseline.tolist(), strict=True)
        },
        "reg_weight": NUISANCE_REG_WEIGHT,
    }


def nuisance_names(views: NaturalViews | SpirographViews) -> tuple[str, ...]:
    return TRANSFORM_PARAMS if isinstance(views, SpirographViews) else JITTER_PARAMS
