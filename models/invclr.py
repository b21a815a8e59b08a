"""SimCLR's NT-Xent loss and the InvCLR gradient penalty (Foster et al., ICLR 2021; spec section 5).

J = ∂ĥ/∂θ is never formed: Rademacher ε gives one vector-Jacobian product g = Jᵀε per image, and
E[(gᵀ(θ' − θ))²] = E‖J(θ' − θ)‖². Draws (ε, θ') are arguments, so a test can pass the authors'.
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
# The relative penalty's smallest spread: far below any batch that still tells its images apart
# (docs/invariance.md section 10), far above float32's rounding of a mean of squares near 1.
SPREAD_FLOOR = 1e-6


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """Scalar mean over the 2N rows of a 2N-way cross-entropy against the other view; z1, z2:
    (N, D), row i of each from image i. One (2N, D)·(D, 2N) product: O(N²) memory, not O(N²·D)."""
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
    """Penalty of spec section 5: the scalar mean over K draws and B images of (g · (θ'_k − θ))²,
    clamped at ``upper_limit``, differentiable in the network's weights. representation: (B, d)
    h of the first view (penalised as ĥ = h / ‖h‖ unless ``normalize`` is off), made from
    ``params``, (B, P) θ, which must require grad; fresh_params: (K, B, P) θ'_k (K = 100 in the
    paper); signs: (B, d) ε. ``combine`` (under `torchrun`, the differentiable mean over
    processes) and the division by ``spread`` (`batch_spread`, not detached) act before the
    clamp, so it sees the global quotient."""
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
    """s = (1/B) Σ_b ‖r_b − μ‖² of the penalised rows r (ĥ, or h with ``normalize`` off) of (B, d)
    ``representation``: the relative penalty's divisor (docs/invariance.md section 10). A scalar
    s ≥ 0, differentiable; zero rows count as rows at the origin, and ``combine`` (as in
    `gradient_penalty`) makes μ and s the global batch's (equal shares)."""
    rows = unit_rows(representation) if normalize else representation
    mean = (lambda x: x) if combine is None else combine
    centre = mean(rows.mean(dim=0))
    return mean((rows - centre).pow(2).sum(dim=-1).mean())


class CollapsedSpread(Exception):
    """The batch's spread fell below `SPREAD_FLOOR`, where P / s and its gradient blow up; raised
    before the backward pass. ``step`` is the global step, counted from 0."""

    def __init__(self, spread: float, step: int) -> None:
        super().__init__(spread, step)
        self.spread = spread
        self.step = step

    def explained(self, steps_per_epoch: int, last_good: object) -> TrainingError:
        """The one-line error for the user."""
        epoch, step = divmod(self.step, steps_per_epoch)
        return TrainingError(
            f"the batch's spread fell to {self.spread:.2e}, below {SPREAD_FLOOR:g}, at step "
            f"{self.step + 1} (epoch {epoch + 1}, step {step + 1}): the representations "
            "bunched, so --gp-scale spread cannot divide by it; stopped without saving. Last good "
            f"checkpoint: {last_good or 'none'}; lower --lambda-gp, or use --gp-scale none"
        )


def checked_spread(
    representation: Tensor, normalize: bool, combine: Callable[[Tensor], Tensor], step: int
) -> Tensor:
    """`batch_spread`, or `CollapsedSpread` below `SPREAD_FLOOR` (costs a host synchronisation)."""
    spread = batch_spread(representation, normalize=normalize, combine=combine)
    if (value := spread.item()) < SPREAD_FLOOR:
        raise CollapsedSpread(value, step)
    return spread


def unit_rows(h: Tensor) -> Tensor:
    """ĥ = h / ‖h‖ for every row of (B, d) ``h``; an all-zero row (a dead ReLU at small width)
    gives a zero row with finite second derivatives, where an eps or ``clamp_min`` leaves NaN or
    moves float32 values. Other rows only see + 0 and × 1, so they are ``h / h.norm()`` bit for
    bit, derivatives included (docs/design.md, "A zero representation")."""
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
    """The encoder and head with the step's device, precision and compilation. The penalised view
    stays eager (double backward cannot go through ``compiled``) and float32 (``amp_dtype``
    autocasts the rest), so the penalty is computed exactly as without them."""

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
            # The compiled forward's versioned copy of the batch-norm running statistics would
            # invalidate the eager graph's saved buffers if it ran second, so view 2 goes first.
            h2 = self._encode(view2, penalised=False)
            return self._encode(view1, penalised=True), h2
        return self._encode(view1, penalised), self._encode(view2, penalised=False)

    def project(self, h: Tensor) -> Tensor:
        """The head's projections of every process's ``h``, in rank order."""
        return gather_rows(self.head(h))
