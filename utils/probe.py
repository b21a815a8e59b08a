"""The full-batch L-BFGS linear probe (spec section 7), shared by training and evaluation.

The encoder is frozen and its representations are computed once; a linear model is then fitted
on the whole training set with L-BFGS (strong-Wolfe line search) until the gradient or the change
in loss falls below a tolerance. Classification minimises cross-entropy + reg·‖W‖², regression
(Spirograph) MSE + reg·‖W‖²; the bias is never penalised. Weights start at zero: the problem is
convex, so the result does not depend on a random initialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def encode(
    encoder: nn.Module,
    batches: Iterable[Tensor],
    to_images: Callable[[Tensor], Tensor],
    device: torch.device,
) -> Tensor:
    """(N, d) float32 representations of the input batches, each made into images by
    ``to_images`` on ``device``; the encoder runs in eval mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = [encoder(to_images(batch.to(device))).float() for batch in batches]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)


@dataclass
class LinearFit:
    """A fitted linear model and how the optimisation ended."""

    model: nn.Linear
    train_loss: float
    grad_norm: float
    iterations: int
    converged: bool = True  # False when L-BFGS stopped at its iteration cap, not on a tolerance


def objective_value(
    model: nn.Linear, features: Tensor, targets: Tensor, task: str, reg_weight: float
) -> Tensor:
    """The probe's objective: cross-entropy (classification) or MSE (regression) + reg·‖W‖²."""
    outputs = model(features)
    if task == "classification":
        data_term = F.cross_entropy(outputs, targets)
    else:
        data_term = F.mse_loss(outputs, targets)
    return data_term + reg_weight * model.weight.pow(2).sum()


def fit_linear(
    features: Tensor,
    targets: Tensor,
    num_outputs: int,
    *,
    task: str,
    reg_weight: float,
    max_iter: int = 1000,
    tolerance: float = 1e-6,
) -> LinearFit:
    """Fit y ≈ W·x + b on the full batch with L-BFGS.

    Args:
        features: (N, d) representations.
        targets: (N,) class indices for ``task="classification"``, (N, num_outputs) for regression.
        reg_weight: weight of ‖W‖² in the objective.
        max_iter: a safety cap on L-BFGS iterations; it normally stops on ``tolerance`` first.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be classification or regression, got {task!r}")
    model = nn.Linear(features.shape[1], num_outputs, device=features.device, dtype=features.dtype)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tolerance,
        tolerance_change=tolerance * 1e-3,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = objective_value(model, features, targets, task, reg_weight)
        loss.backward()
        return loss

    optimizer.step(closure)
    loss = closure()
    grad_norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    # LBFGS keeps its state on the first parameter.
    iterations = optimizer.state[model.weight]["n_iter"]
    iterations = int(iterations)
    return LinearFit(
        model.eval(), loss.item(), grad_norm.item(), iterations, converged=iterations < max_iter
    )


@torch.no_grad()
def evaluate_linear(
    fit: LinearFit, features: Tensor, targets: Tensor, task: str
) -> dict[str, float]:
    """Classification: accuracy (%) and cross-entropy; regression: MSE over all targets."""
    outputs = fit.model(features)
    if task == "classification":
        accuracy = (outputs.argmax(dim=1) == targets).float().mean().item() * 100
        return {"accuracy": accuracy, "loss": F.cross_entropy(outputs, targets).item()}
    per_target = ((outputs - targets) ** 2).mean(dim=0)
    return {"mse": per_target.mean().item(), "mse_per_target": per_target.tolist()}
