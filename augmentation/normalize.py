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


def _stats(images: Tensor, dataset: str) -> tuple[Tensor, Tensor] | None:
    """(mean, std) of ``dataset`` shaped (3, 1, 1) on the images' device, or None (Spirograph)."""
    if dataset not in DATASET_STATS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASET_STATS)}")
    stats = DATASET_STATS[dataset]
    if stats is None:
        return None
    mean, std = (
        torch.tensor(v, device=images.device, dtype=images.dtype).reshape(3, 1, 1) for v in stats
    )
    return mean, std


def normalize(images: Tensor, dataset: str) -> Tensor:
    """(x − mean) / std per channel of (B, 3, H, W) images, with the statistics of ``dataset``."""
    stats = _stats(images, dataset)
    return images if stats is None else (images - stats[0]) / stats[1]


def denormalize(images: Tensor, dataset: str) -> Tensor:
    """The inverse of `normalize`, for showing views as pictures."""
    stats = _stats(images, dataset)
    return images if stats is None else images * stats[1] + stats[0]
