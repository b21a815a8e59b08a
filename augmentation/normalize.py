"""Per-dataset channel normalisation, applied last (spec section 1)."""

from __future__ import annotations

import torch
from torch import Tensor

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# (mean, std) per dataset; Spirograph images are used as rendered.
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2009, 0.1984, 0.2023)),
    "stl10": _IMAGENET,
    "imagenet": _IMAGENET,
    "spirograph": None,
}


def normalize(images: Tensor, dataset: str) -> Tensor:
    """(x − mean) / std per channel of (B, 3, H, W) images, with the statistics of ``dataset``."""
    if dataset not in DATASET_STATS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASET_STATS)}")
    stats = DATASET_STATS[dataset]
    if stats is None:
        return images
    mean = torch.tensor(stats[0], device=images.device, dtype=images.dtype).reshape(3, 1, 1)
    std = torch.tensor(stats[1], device=images.device, dtype=images.dtype).reshape(3, 1, 1)
    return (images - mean) / std


def denormalize(images: Tensor, dataset: str) -> Tensor:
    """The inverse of `normalize`, for showing views as pictures."""
    stats = DATASET_STATS[dataset]
    if stats is None:
        return images
    mean = torch.tensor(stats[0], device=images.device, dtype=images.dtype).reshape(3, 1, 1)
    std = torch.tensor(stats[1], device=images.device, dtype=images.dtype).reshape(3, 1, 1)
    return images * std + mean
