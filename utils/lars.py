"""LARS (spec section 6) as a wrapper around any optimizer, with `torchlars` semantics in plain
PyTorch: torchlars 0.1.2, its last release, does not build against torch 2.x."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer


class LARS:
    """Drop-in wrapper: ``LARS(SGD(params, lr, momentum, weight_decay), eps, trust_coef)``.

    Each parameter w with gradient g, in a group without ``lars_adapt=False``, gets

        η = trust · ‖w‖ / (‖g‖ + wd·‖w‖ + eps)   if ‖w‖ > 0 and ‖g‖ > 0, else 1
        g ← (g + wd·w) · η

    and the wrapped optimizer steps with its own weight decay off, so decay is applied once.
    """

    def __init__(self, optimizer: Optimizer, eps: float = 1e-8, trust_coef: float = 1e-3) -> None:
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        if trust_coef < 0:
            raise ValueError(f"trust_coef must be non-negative, got {trust_coef}")
        self.optim = optimizer
        self.eps = eps
        self.trust_coef = trust_coef

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optim.param_groups

    @property
    def state(self) -> dict:
        return self.optim.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optim.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.optim.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optim.load_state_dict(state_dict)

    @torch.no_grad()
    def _adapt_gradients(self, weight_decays: list[float]) -> None:
        for group, weight_decay in zip(self.optim.param_groups, weight_decays, strict=False):
            if not group.get("lars_adapt", True):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(p.grad)
                # torch.where keeps this free of host synchronisation (no Python branch on a norm).
                ratio = self.trust_coef * w_norm / (g_norm + weight_decay * w_norm + self.eps)
                local_lr = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
                p.grad.add_(p, alpha=weight_decay).mul_(local_lr)

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        weight_decays = [group.get("weight_decay", 0.0) or 0.0 for group in self.optim.param_groups]
        self._adapt_gradients(weight_decays)
        for group in self.optim.param_groups:
            group["weight_decay"] = 0.0
        try:
            self.optim.step()
        finally:
            for group, weight_decay in zip(self.optim.param_groups, weight_decays, strict=False):
                group["weight_decay"] = weight_decay
        return loss

    def __repr__(self) -> str:
        return f"LARS(eps={self.eps}, trust_coef={self.trust_coef}, optim={self.optim!r})"


def param_groups_excluding_bn_bias(
    modules: Iterable[nn.Module], weight_decay: float
) -> list[dict[str, Any]]:
    """Two parameter groups, as in SimCLR's TensorFlow code: weights (decayed, adapted) and the
    batch-norm and bias parameters, i.e. those with at most one dimension (neither)."""
    decayed, excluded = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (excluded if p.ndim <= 1 else decayed).append(p)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": excluded, "weight_decay": 0.0, "lars_adapt": False},
    ]
