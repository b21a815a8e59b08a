import pytest
import torch
from torch import nn
from torch.func import functional_call

from augmentation.colour import colour_distortion, sample_jitter_params
from datasets.spirograph import render_spirograph, sample_data_params, sample_transform_params
from models import ResNetEncoder
from utils.gradient_penalty import gradient_penalty, rademacher


def tiny_encoder() -> nn.Module:
    """Smooth (softplus) and batch-independent, so each image's Jacobian stands alone."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2),
        nn.Softplus(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).double()


def colour_view(images, jitter, gray):
    return lambda theta: colour_distortion(images, theta, jitter, gray)


def spirograph_view(data):
    return lambda theta: render_spirograph(data, theta)


def slow_penalty(encoder, view, theta, signs, fresh, normalize):
    """Per image, the full Jacobian J_i = ∂ĥ_i/∂θ_i; then mean over k, i of (ε_iᵀ J_i Δθ_ki)²."""
    terms = []
    for i in range(theta.shape[0]):

        def h_i(theta_i, i=i):
            full = torch.cat([theta[:i], theta_i[None], theta[i + 1 :]])
            h = encoder(view(full))[i]
            return h / h.norm() if normalize else h

        jac = torch.autograd.functional.jacobian(h_i, theta[i].detach())  # (d, P)
        for k in range(fresh.shape[0]):
            terms.append((signs[i] @ jac @ (fresh[k, i] - theta[i].detach())) ** 2)
    return torch.stack(terms).mean()


def cases():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 9, 9, generator=gen, dtype=torch.float64)
    jitter = torch.tensor([True, True, False])
    gray = torch.tensor([False, True, False])
    theta_c = sample_jitter_params(3, 0.5, generator=gen).double()
    data = sample_data_params(3, generator=gen).double()
    theta_s = sample_transform_params(3, generator=gen).double()
    return [
        (
            "colour",
            colour_view(images, jitter, gray),
            theta_c,
            lambda n: sample_jitter_params(n, 0.5, generator=gen).double(),
        ),
        (
            "spirograph",
            spirograph_view(data),
            theta_s,
            lambda n: sample_transform_params(n, generator=gen).double(),
        ),
    ]


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_penalty_equals_per_image_jacobian_reference(case, normalize):
    _, view, theta, sampler = case
    encoder = tiny_encoder()
    theta = theta.clone().requires_grad_()
    k = 4
    fresh = sampler(k * 3).reshape(k, 3, -1)
    signs = rademacher((3, 5), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    penalty = gradient_penalty(
        encoder(view(theta)),
        theta,
        lambda n: fresh.reshape(n, -1),
        num_samples=k,
        upper_limit=1e9,
        normalize=normalize,
        signs=signs,
    )
    expected = slow_penalty(encoder, view, theta, signs, fresh, normalize)
    assert penalty.item() > 0
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_penalty_gradient_matches_finite_differences(case):
    _, view, theta, sampler = case
    encoder = tiny_encoder()
    fresh = sampler(2 * 3)
    signs = rademacher((3, 5), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    names = [name for name, _ in encoder.named_parameters()]

    def penalty_of(*weights):
        th = theta.clone().requires_grad_()
        h = functional_call(encoder, dict(zip(names, weights, strict=False)), (view(th),))
        return gradient_penalty(h, th, lambda n: fresh, num_samples=2, upper_limit=1e9, signs=signs)

    weights = tuple(p.detach().clone().requires_grad_() for p in encoder.parameters())
    assert torch.autograd.gradcheck(penalty_of, weights, eps=1e-6, atol=1e-8, rtol=1e-5)


def test_upper_limit_clamps_value_and_stops_gradient():
    encoder = tiny_encoder()
    _, view, theta, sampler = cases()[1]
    theta = theta.clone().requires_grad_()
    fresh = sampler(10 * 3)
    free = gradient_penalty(
        encoder(view(theta)), theta, lambda n: fresh, num_samples=10, upper_limit=1e9
    )
    limit = free.item() / 2
    clamped = gradient_penalty(
        encoder(view(theta)), theta, lambda n: fresh, num_samples=10, upper_limit=limit
    )
    assert clamped.item() == pytest.approx(limit)
    clamped.backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in encoder.parameters())


def test_combine_acts_on_the_mean_before_the_clamp():
    """Distributed training passes the mean over processes as ``combine``: it must see the
    unclamped mean, and the clamp must bind on its result, as one process clamps the mean of
    the global batch."""
    encoder = tiny_encoder()
    _, view, theta, sampler = cases()[1]
    theta = theta.clone().requires_grad_()
    fresh = sampler(10 * 3)
    seen = []

    def triple(mean):
        seen.append(mean.detach().clone())
        return 3 * mean

    def penalty(limit, combine=None):
        torch.manual_seed(0)  # the same Rademacher signs every call
        return gradient_penalty(
            encoder(view(theta)), theta, lambda n: fresh, num_samples=10, upper_limit=limit,
            combine=combine,
        )  # fmt: skip

    free = penalty(1e9).item()
    assert penalty(1e9, triple).item() == pytest.approx(3 * free)
    assert seen[0].item() == pytest.approx(free)
    assert penalty(2 * free, triple).item() == pytest.approx(2 * free)


def test_invariant_encoder_has_zero_penalty():
    # A representation that ignores its input (but stays in the graph) is perfectly invariant.
    _, view, theta, sampler = cases()[0]
    theta = theta.clone().requires_grad_()
    h = view(theta).sum() * 0 + torch.ones(3, 5, dtype=torch.float64)
    penalty = gradient_penalty(h, theta, sampler, num_samples=5)
    assert penalty.item() == 0


def test_resnet_double_backward_reaches_every_weight():
    """Train-mode batch norm and the CIFAR stem support the penalty's second derivative."""
    torch.manual_seed(0)
    encoder = ResNetEncoder("resnet18", "cifar")
    images = torch.rand(4, 3, 8, 8)
    theta = sample_jitter_params(4, 0.5).requires_grad_()
    view = colour_distortion(
        images, theta, torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    )
    penalty = gradient_penalty(
        encoder(view), theta, lambda n: sample_jitter_params(n, 0.5), upper_limit=1e6
    )
    penalty.backward()
    assert penalty.item() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_rejects_parameters_without_grad():
    with pytest.raises(ValueError, match="require grad"):
        gradient_penalty(torch.randn(2, 3), torch.randn(2, 4), lambda n: torch.randn(n, 4))


def test_rademacher_signs():
    signs = rademacher((10_000,), generator=torch.Generator().manual_seed(0))
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert abs(signs.mean().item()) < 0.05
