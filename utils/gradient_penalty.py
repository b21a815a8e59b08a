"""The InvCLR gradient penalty (Foster et al., ICLR 2021; spec section 5).

It estimates how much the (normalised) representation moves when the transformation parameters
are redrawn, through a first-order expansion around the parameters the view was rendered from:
h(θ') − h(θ) ≈ J(θ)(θ' − θ). The Jacobian J is never formed: a Rademacher projection εᵀĥ turns
it into one vector-Jacobian product g = Jᵀε per image, and E[(gᵀ(θ' − θ))²] over ε and θ' equals
E‖J(θ' − θ)‖².
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def gradient_penalty(
    representation: Tensor,
    params: Tensor,
    sample_params: Callable[[int], Tensor],
    *,
    num_samples: int = 100,
    upper_limit: float = 1.0,
    normalize: bool = True,
    signs: Tensor | None = None,
    combine: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Penalty of spec section 5, differentiable with respect to the network's weights.

    Args:
        representation: (B, d) encoder output h of the first view, computed from ``params``.
        params: (B, P) transformation parameters θ the view was made from; must require grad and
            be part of ``representation``'s graph.
        sample_params: draws n fresh (n, P) parameter rows from θ's distribution, on θ's device.
        num_samples: K, fresh draws per image (100 in the paper).
        upper_limit: the penalty is clamped from above at this value.
        normalize: penalise ĥ = h / ‖h‖ (the default) rather than h.
        signs: (B, d) Rademacher signs ε; drawn here (±1 with equal probability) when None.
        combine: applied to the mean before the clamp. Distributed training passes the
            differentiable mean over processes, so that the clamp acts on the global batch's mean
            as it would in one process.
    Returns:
        Scalar mean over the K draws and B images of (g · (θ'_k − θ))², clamped at ``upper_limit``.
    """
    if not params.requires_grad:
        raise ValueError(
            "params must require grad: the penalty differentiates with respect to them"
        )
    if representation.shape[0] != params.shape[0]:
        raise ValueError(
            f"batch sizes differ: representation {representation.shape[0]}, "
            f"params {params.shape[0]}"
        )
    h = representation
    if normalize:
        h = h / h.norm(dim=-1, keepdim=True)
    if signs is None:
        signs = rademacher(h.shape, device=h.device, dtype=h.dtype)
    (g,) = torch.autograd.grad((signs * h).sum(), params, create_graph=True)
    b, p = params.shape
    fresh = sample_params(num_samples * b).reshape(num_samples, b, p).to(g.dtype)
    steps = fresh - params.detach()
    mean = ((steps * g).sum(dim=-1) ** 2).mean()
    if combine is not None:
        mean = combine(mean)
    return mean.clamp(max=upper_limit)


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
