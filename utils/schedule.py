"""The `--cosine-anneal` learning-rate schedule: a linear ramp meeting a cosine decay (spec 6)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def ramp_cosine_lr(
    epoch: int, base_lr: float, total_epochs: int, ramp_epochs: int = 10, eta_min: float = 0.0
) -> float:
    """min(base·(e + 1)/ramp, η_min + (base − η_min)·(1 + cos(π·e/T))/2) for epoch e from 0."""
    ramp = base_lr * (epoch + 1) / ramp_epochs
    cosine = eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / total_epochs)) / 2
    return min(ramp, cosine)


class CosineAnnealingWithLinearRampLR(LRScheduler):
    """Per-epoch scheduler for the optimizer that LARS wraps: call ``step()`` after every epoch.
    The rate is a closed-form function of the epoch, so ``state_dict()`` resumes it exactly."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_epochs: int,
        ramp_epochs: int = 10,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be at least 1, got {total_epochs}")
        if ramp_epochs < 1:
            raise ValueError(f"ramp_epochs must be at least 1, got {ramp_epochs}")
        self.total_epochs = total_epochs
        self.ramp_epochs = ramp_epochs
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            ramp_cosine_lr(self.last_epoch, base, self.total_epochs, self.ramp_epochs, self.eta_min)
            for base in self.base_lrs
        ]
