"""The method: SimCLR's NT-Xent loss and the InvCLR gradient penalty (spec section 5).

NT-Xent pulls the projections of an image's two views together against every other projection in
the batch. The penalty (Foster et al., ICLR 2021) estimates how much the (normalised)
representation moves when the transformation parameters θ of the first view are redrawn, through
a first-order expansion around them: h(θ') − h(θ) ≈ J(θ)(θ' − θ). The Jacobian J is never formed:
a Rademacher projection εᵀĥ turns it into one vector-Jacobian product g = Jᵀε per image, and
E[(gᵀ(θ' − θ))²] over ε and θ' equals E‖J(θ' − θ)‖².

The loss and the penalty are pure functions of tensors: every random draw (the signs ε, the
fresh θ') is an argument, made by the view maker (augmentation/views.py), so a test can pass the
authors' own draws. `Networks`, below them, holds what the training step runs them on: devices,
precision and compilation.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.cli import TrainingError
from utils.distributed import gather_rows

PENALTY_SAMPLES = 100  # K of spec section 5: fresh parameter draws per image
# The relative penalty's smallest spread. Random networks' rows spread 0.004-0.016 (Spirograph)
# and about 0.013 (CIFAR-10) at initialisation; 1e-6 is far below any batch that still tells its
# images apart, and far above float32's rounding of a mean of squares near 1.
SPREAD_FLOOR = 1e-6


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """Mean over the 2N projections of a 2N-way cross-entropy against the other view.

    Args:
        z1, z2: (N, D) projections of the two views; row i of each comes from image i.
        temperature: divides the cosine similarities.
    Returns:
        Scalar loss. The similarities are one (2N, D)·(D, 2N) product of unit vectors, so memory
        is O(N²) rather than the O(N²·D) of a broadcast cosine similarity.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 2:
        raise ValueError("NT-Xent needs at least 2 images: with one there are no negatives")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    # Row i's positive is i + N, row i + N's is i.
    targets = torch.arange(2 * n, device=z.device).roll(n)
    return F.cross_entropy(logits, targets)


def gradient_penalty(
    representation: Tensor,
    params: Tensor,
    fresh_params: Tensor,
    signs: Tensor,
    *,
    upper_limit: float = 1.0,
    normalize: bool = True,
    combine: Callable[[Tensor], Tensor] | None = None,
    spread: Tensor | None = None,
) -> Tensor:
    """Penalty of spec section 5, differentiable with respect to the network's weights.

    Args:
        representation: (B, d) encoder output h of the first view, computed from ``params``.
        params: (B, P) transformation parameters θ the view was made from; must require grad and
            be part of ``representation``'s graph.
        fresh_params: (K, B, P) fresh draws θ'_k from θ's distribution, K per image (100 in the
            paper).
        signs: (B, d) Rademacher signs ε (`rademacher`).
        upper_limit: the penalty is clamped from above at this value.
        normalize: penalise ĥ = h / ‖h‖ (the default) rather than h.
        combine: applied to the mean before the clamp. Distributed training passes the
            differentiable mean over processes, so that the clamp acts on the global batch's mean
            as it would in one process.
        spread: the relative penalty's divisor (`batch_spread`, not detached): the mean is
            divided by it before the clamp, so ``upper_limit`` is in units of the quotient.
    Returns:
        Scalar mean over the K draws and B images of (g · (θ'_k − θ))² (over ``spread`` when
        given), clamped at ``upper_limit``.
    """
    if not params.requires_grad:
        raise ValueError(
            "params must require grad: the penalty differentiates with respect to them"
        )
    b, p = params.shape
    if representation.shape[0] != b or fresh_params.shape[1:] != (b, p):
        raise ValueError(
            f"shapes disagree: representation {tuple(representation.shape)}, params "
            f"{tuple(params.shape)}, fresh_params {tuple(fresh_params.shape)} (expected (K, {b}, "
            f"{p}))"
        )
    h = unit_rows(representation) if normalize else representation
    (g,) = torch.autograd.grad((signs * h).sum(), params, create_graph=True)
    steps = fresh_params.to(g.dtype) - params.detach()
    mean = ((steps * g).sum(dim=-1) ** 2).mean()
    if combine is not None:
        mean = combine(mean)
    if spread is not None:
        mean = mean / spread
    return mean.clamp(max=upper_limit)


def batch_spread(
    representation: Tensor,
    *,
    normalize: bool = True,
    combine: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """s = (1/B) Σ_b ‖r_b − μ‖², the spread of the penalised rows r (ĥ, or h with ``normalize``
    off) about their batch mean μ: what the relative penalty divides by. On unit rows it is
    1 − ‖μ‖², which reaches 0 exactly when the rows bunch into one; P / s does not change when
    every row moves toward the others by the same factor, so bunching cannot lower it. Zero rows
    (`unit_rows`) count as rows at the origin. ``combine``, the differentiable mean over
    processes under `torchrun`, makes μ and s those of the global batch (equal shares).

    Args:
        representation: (B, d) encoder output h of the penalised view.
    Returns:
        Scalar s ≥ 0, differentiable with respect to ``representation``.
    """
    rows = unit_rows(representation) if normalize else representation
    mean = (lambda x: x) if combine is None else combine
    centre = mean(rows.mean(dim=0))
    return mean((rows - centre).pow(2).sum(dim=-1).mean())


class CollapsedSpread(Exception):
    """The batch's spread fell below `SPREAD_FLOOR` (the rows bunched into one), where the
    relative penalty P / s and its gradient blow up; raised before the backward pass, so no
    weight has seen it. Training names the global ``step`` (counted from 0)."""

    def __init__(self, spread: float, step: int | None = None) -> None:
        super().__init__(spread, step)
        self.spread = spread
        self.step = step

    def explained(self, steps_per_epoch: int, last_good: object) -> TrainingError:
        """The one-line error for the user."""
        epoch, step = divmod(self.step or 0, steps_per_epoch)
        return TrainingError(
            f"the batch's spread fell to {self.spread:.2e}, below {SPREAD_FLOOR:g}, at step "
            f"{(self.step or 0) + 1} (epoch {epoch + 1}, step {step + 1}): the representations "
            "bunched, so --gp-scale spread cannot divide by it; stopped without saving. Last good "
            f"checkpoint: {last_good or 'none'}; lower --lambda-gp, or use --gp-scale none"
        )


def checked_spread(
    representation: Tensor, normalize: bool, combine: Callable[[Tensor], Tensor], step: int
) -> Tensor:
    """`batch_spread`, refused with `CollapsedSpread` (naming global ``step``) below
    `SPREAD_FLOOR`; reading it costs the step a host synchronisation."""
    spread = batch_spread(representation, normalize=normalize, combine=combine)
    if (value := spread.item()) < SPREAD_FLOOR:
        raise CollapsedSpread(value, step)
    return spread


def unit_rows(h: Tensor) -> Tensor:
    """ĥ = h / ‖h‖ for every row of (B, d) ``h``; an all-zero row (a dead ReLU at small width)
    gives a zero row with finite derivatives.

    ‖h‖'s derivative at zero is 0/0, and ``clamp_min`` or an eps in the norm leave NaN second
    derivatives there, or move float32 values. Here a zero row becomes a row of ones before the
    norm (adding exactly 0 everywhere else), and its result is multiplied by 0 (every other row
    by exactly 1): additions of 0 and products with 1 change no value and no derivative, so every
    other row's values and first and second derivatives are bit for bit those of
    ``h / h.norm()``, and a fixed-seed run trains to the same weights."""
    alive = (h != 0).any(dim=-1, keepdim=True).to(h.dtype)
    safe = h + (1 - alive)
    return safe / safe.norm(dim=-1, keepdim=True) * alive


def rademacher(
    shape: torch.Size | tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A tensor of independent ±1 entries, each sign with probability 1/2."""
    bits = torch.randint(0, 2, shape, device=device, generator=generator, dtype=torch.int8)
    return bits.to(dtype) * 2 - 1


class Networks:
    """The encoder and projection head as the training step uses them.

    Device, precision and compilation live here, so the step shows only the method:
    ``compiled`` (``torch.compile`` of ``encoder``, sharing its weights) encodes every view whose
    graph is differentiated once; the penalised view stays eager, because the penalty's double
    backward cannot go through a compiled graph. ``amp_dtype`` (bfloat16 or float16) runs the
    other view, the head and NT-Xent under autocast; the penalised view stays in float32, so the
    penalty and its double backward are computed exactly as without it. ``channels_last`` lays
    the views out NHWC. Under `torchrun`, `project` gathers every process's projections, so
    NT-Xent sees the global batch.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        *,
        compiled: nn.Module | None = None,
        amp_dtype: torch.dtype | None = None,
        channels_last: bool = False,
    ) -> None:
        self.encoder = encoder
        self.head = head
        self.compiled = compiled
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last

    def parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.head.parameters()]

    def train(self) -> None:
        self.encoder.train()
        self.head.train()

    def autocast(self, device: torch.device, enabled: bool = True) -> AbstractContextManager:
        """Mixed precision when ``amp_dtype`` is set (and ``enabled``); a no-op otherwise."""
        on = enabled and self.amp_dtype is not None
        return torch.autocast(device.type, self.amp_dtype, enabled=on)

    def _encode(self, view: Tensor, penalised: bool) -> Tensor:
        if self.channels_last:
            view = view.contiguous(memory_format=torch.channels_last)
        module = self.encoder if penalised or self.compiled is None else self.compiled
        with self.autocast(view.device, enabled=not penalised):
            return module(view)

    def encode(self, view1: Tensor, view2: Tensor, penalised: bool) -> tuple[Tensor, Tensor]:
        """(h1, h2), the representations of the two views; ``view1`` is the penalised one."""
        if self.compiled is not None and penalised:
            # The compiled forward writes batch-norm running statistics back with a versioned
            # copy, which would invalidate the eager graph's saved buffers if it ran second; so
            # view 2 goes first here (the running statistics see the views in the other order).
            h2 = self._encode(view2, penalised=False)
            return self._encode(view1, penalised=True), h2
        return self._encode(view1, penalised), self._encode(view2, penalised=False)

    def project(self, h: Tensor) -> Tensor:
        """The head's projections of every process's ``h``, in rank order."""
        return gather_rows(self.head(h))
