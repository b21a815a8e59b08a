"""models/invclr.py: NT-Xent and the gradient penalty against the authors' numbers and slow
references."""

import math

import numpy as np
import pytest
import torch
from conftest import DATA, as_tensor
from torch import nn
from torch.func import functional_call

from augmentation.colour import colour_distortion, sample_jitter_params
from augmentation.normalize import normalize
from augmentation.spirograph import render_spirograph, sample_data_params, sample_transform_params
from models import ResNetEncoder
from models.invclr import batch_spread, gradient_penalty, nt_xent, rademacher, unit_rows

REPO = DATA.parent.parent


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


def slow_penalty(encoder, view, theta, signs, fresh, normalize, rows=None):
    """Per image, the full Jacobian J_i = ∂ĥ_i/∂θ_i; then mean over k, i of (ε_iᵀ J_i Δθ_ki)²;
    ``rows``: those images only (``signs`` and ``fresh`` then hold theirs)."""
    terms = []
    for n, i in enumerate(rows or range(theta.shape[0])):

        def h_i(theta_i, i=i):
            full = torch.cat([theta[:i], theta_i[None], theta[i + 1 :]])
            h = encoder(view(full))[i]
            return h / h.norm() if normalize else h

        jac = torch.autograd.functional.jacobian(h_i, theta[i].detach())  # (d, P)
        for k in range(fresh.shape[0]):
            terms.append((signs[n] @ jac @ (fresh[k, n] - theta[i].detach())) ** 2)
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
        encoder(view(theta)), theta, fresh, signs, upper_limit=1e9, normalize=normalize
    )
    expected = slow_penalty(encoder, view, theta, signs, fresh, normalize)
    assert penalty.item() > 0
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_penalty_gradient_matches_finite_differences(case):
    _, view, theta, sampler = case
    encoder = tiny_encoder()
    fresh = sampler(2 * 3).reshape(2, 3, -1)
    signs = rademacher((3, 5), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    names = [name for name, _ in encoder.named_parameters()]

    def penalty_of(*weights):
        th = theta.clone().requires_grad_()
        h = functional_call(encoder, dict(zip(names, weights, strict=False)), (view(th),))
        return gradient_penalty(h, th, fresh, signs, upper_limit=1e9)

    weights = tuple(p.detach().clone().requires_grad_() for p in encoder.parameters())
    assert torch.autograd.gradcheck(penalty_of, weights, eps=1e-6, atol=1e-8, rtol=1e-5)


def test_upper_limit_clamps_value_and_stops_gradient():
    encoder = tiny_encoder()
    _, view, theta, sampler = cases()[1]
    theta = theta.clone().requires_grad_()
    fresh, signs = sampler(10 * 3).reshape(10, 3, -1), rademacher((3, 5), dtype=torch.float64)
    free = gradient_penalty(encoder(view(theta)), theta, fresh, signs, upper_limit=1e9)
    limit = free.item() / 2
    clamped = gradient_penalty(encoder(view(theta)), theta, fresh, signs, upper_limit=limit)
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
    fresh, signs = sampler(10 * 3).reshape(10, 3, -1), rademacher((3, 5), dtype=torch.float64)
    seen = []

    def triple(mean):
        seen.append(mean.detach().clone())
        return 3 * mean

    def penalty(limit, combine=None):
        return gradient_penalty(
            encoder(view(theta)), theta, fresh, signs, upper_limit=limit, combine=combine
        )

    free = penalty(1e9).item()
    assert penalty(1e9, triple).item() == pytest.approx(3 * free)
    assert seen[0].item() == pytest.approx(free)
    assert penalty(2 * free, triple).item() == pytest.approx(2 * free)


def test_invariant_encoder_has_zero_penalty():
    # A representation that ignores its input (but stays in the graph) is perfectly invariant.
    _, view, theta, sampler = cases()[0]
    theta = theta.clone().requires_grad_()
    h = view(theta).sum() * 0 + torch.ones(3, 5, dtype=torch.float64)
    signs = rademacher((3, 5), dtype=torch.float64)
    penalty = gradient_penalty(h, theta, sampler(5 * 3).reshape(5, 3, -1), signs)
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
    h = encoder(view)
    fresh = sample_jitter_params(100 * 4, 0.5).reshape(100, 4, -1)
    penalty = gradient_penalty(h, theta, fresh, rademacher(h.shape), upper_limit=1e6)
    penalty.backward()
    assert penalty.item() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


# The authors' penalty (spec section 9): their train() in float64 on a tiny network whose batch
# norm uses batch statistics, so every image's representation depends on the whole batch.


def reference_network(ref: dict[str, np.ndarray]) -> nn.Module:
    """The reference's network, in train mode, with its weights (``net_<name>`` keys)."""
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ).double()  # fmt: skip
    weights = {name: as_tensor(ref["net_" + name.replace(".", "_")]) for name, _ in
               net.named_parameters()}  # fmt: skip
    net.load_state_dict(weights, strict=False)  # the running statistics are not used in train mode
    return net.train()


def penalty_through_the_project(
    ref: dict[str, np.ndarray], case: str, normalize_h: bool
) -> dict[str, torch.Tensor]:
    """The reference's case computed by this project's colour distortion (every image jittered,
    none gray) and CIFAR-10 normalisation, or its renderer, then `gradient_penalty` unclamped:
    the penalty and its gradient with respect to each weight, named as the reference names them."""
    net = reference_network(ref)
    theta = as_tensor(ref[f"{case}_theta"]).requires_grad_()
    if case == "colour":
        images = as_tensor(ref["colour_images"])
        every, none = torch.ones(6, dtype=torch.bool), torch.zeros(6, dtype=torch.bool)
        view = normalize(colour_distortion(images, theta, every, none), "cifar10")
    else:
        view = render_spirograph(as_tensor(ref["spirograph_data"]), theta)
    h = net(view)
    penalty = gradient_penalty(
        h, theta, as_tensor(ref[f"{case}_fresh"]), as_tensor(ref[f"{case}_signs"]),
        upper_limit=math.inf, normalize=normalize_h,
    )  # fmt: skip
    names = [name.replace(".", "_") for name, _ in net.named_parameters()]
    grads = torch.autograd.grad(penalty, list(net.parameters()))
    prefix = case if normalize_h else f"{case}_raw"
    return {f"{prefix}_penalty": penalty} | {
        f"{prefix}_grad_{name}": grad for name, grad in zip(names, grads, strict=True)
    }


def worst_differences(
    computed: dict[str, torch.Tensor], ref: dict[str, np.ndarray]
) -> dict[str, float]:
    """Per key, the largest |computed − reference| over the reference's largest magnitude (the
    absolute difference where the reference is exactly zero)."""
    worst = {}
    for key, value in computed.items():
        expected = as_tensor(ref[key])
        assert value.shape == expected.shape, key
        scale = expected.abs().max().item()
        difference = (value.detach() - expected).abs().max().item()
        worst[key] = difference / scale if scale > 0 else difference
    return worst


PENALTY_CASES = [(case, normalize_h) for case in ("colour", "spirograph") for normalize_h in
                 (True, False)]  # fmt: skip


@pytest.mark.parametrize(("case", "normalize_h"), PENALTY_CASES)
def test_penalty_and_every_weight_gradient_match_the_authors(penalty_ref, case, normalize_h):
    computed = penalty_through_the_project(penalty_ref, case, normalize_h)
    assert len(computed) == 7  # the penalty and the gradients of six weight tensors
    worst = worst_differences(computed, penalty_ref)
    assert max(worst.values()) <= 1e-10, worst


@pytest.mark.parametrize(("case", "normalize_h"), PENALTY_CASES)
def test_the_reference_comparison_fails_on_a_gradient_changed_by_a_tenth_of_a_percent(
    penalty_ref, case, normalize_h
):
    """The tests above would notice: one weight's gradient scaled by 1.001 in the reference, or
    the penalty, fails the 1e-10 tolerance by far."""
    computed = penalty_through_the_project(penalty_ref, case, normalize_h)
    prefix = case if normalize_h else f"{case}_raw"
    for key in (f"{prefix}_grad_3_weight", f"{prefix}_penalty"):
        changed = dict(penalty_ref, **{key: penalty_ref[key] * 1.001})
        worst = worst_differences(computed, changed)
        assert worst[key] > 1e-4
        assert max(v for k, v in worst.items() if k != key) <= 1e-10


def test_the_penalty_reference_copy_is_the_shared_one():
    shared = REPO.parent / "shared" / "reference" / "invclr_penalty_reference.npz"
    if not shared.is_file():
        pytest.skip("no ../shared/reference beside this clone")
    assert shared.read_bytes() == (DATA / "invclr_penalty_reference.npz").read_bytes()


def test_an_all_zero_representation_row_leaves_the_penalty_and_its_gradients_finite():
    """A dead row (every unit of one image's representation at zero, as a dead ReLU at small
    width gives) leaves a finite penalty and finite weight gradients through the double
    backward."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
    theta = torch.randn(5, 4, requires_grad=True)
    dead = torch.ones(5, 1)
    dead[2] = 0
    h = net(theta) * dead
    penalty = gradient_penalty(h, theta, torch.randn(10, 5, 4), rademacher((5, 6)), upper_limit=1e9)
    grads = torch.autograd.grad(penalty, list(net.parameters()))
    assert torch.isfinite(penalty) and penalty.item() > 0
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_unit_rows_is_h_over_its_norm_bit_for_bit_beside_a_zero_row():
    """The floor changes nothing but the zero row: a fixed-seed run trains to the same weights."""
    h = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    h[2] = 0
    unit = unit_rows(h)
    alive = [0, 1, 3, 4]
    assert torch.equal(unit[alive], h[alive] / h[alive].norm(dim=-1, keepdim=True))
    assert torch.equal(unit[2], torch.zeros(6))


def test_the_floor_leaves_the_penalty_and_its_weight_gradients_bit_identical(penalty_ref):
    """In float32 through train-mode batch norm, as training runs it: the penalty and every weight
    gradient equal, bit for bit, those computed with the plain h / ‖h‖."""
    net = reference_network(penalty_ref).float()
    theta = as_tensor(penalty_ref["colour_theta"]).float().requires_grad_()
    every, none = torch.ones(6, dtype=torch.bool), torch.zeros(6, dtype=torch.bool)
    view = colour_distortion(as_tensor(penalty_ref["colour_images"]).float(), theta, every, none)
    fresh = as_tensor(penalty_ref["colour_fresh"]).float()
    signs = as_tensor(penalty_ref["colour_signs"]).float()

    def penalty_and_grads(unit):
        h = unit(net(normalize(view, "cifar10")))
        (g,) = torch.autograd.grad((signs * h).sum(), theta, create_graph=True)
        penalty = (((fresh - theta.detach()) * g).sum(-1) ** 2).mean()
        return [penalty, *torch.autograd.grad(penalty, list(net.parameters()))]

    floored = penalty_and_grads(unit_rows)
    plain = penalty_and_grads(lambda h: h / h.norm(dim=-1, keepdim=True))
    assert all(torch.equal(a, b) for a, b in zip(floored, plain, strict=True))


def test_rejects_parameters_without_grad():
    with pytest.raises(ValueError, match="require grad"):
        gradient_penalty(
            torch.randn(2, 3), torch.randn(2, 4), torch.randn(5, 2, 4), rademacher((2, 3))
        )


def test_rejects_fresh_draws_of_the_wrong_shape():
    theta = torch.randn(2, 4, requires_grad=True)
    with pytest.raises(ValueError, match=r"expected \(K, 2, 4\)"):
        gradient_penalty(theta @ torch.ones(4, 3), theta, torch.randn(10, 4), rademacher((2, 3)))


def test_rademacher_signs():
    signs = rademacher((10_000,), generator=torch.Generator().manual_seed(0))
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert abs(signs.mean().item()) < 0.05


# NT-Xent


def slow_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Spec section 5 written out one row at a time."""
    z = torch.cat([z1, z2]).double()
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        logits = [
            torch.nn.functional.cosine_similarity(z[i], z[k], dim=0) / temperature
            for k in range(2 * n)
            if k != i
        ]
        others = [k for k in range(2 * n) if k != i]
        log_norm = torch.logsumexp(torch.stack(logits), dim=0)
        total += log_norm - logits[others.index(positive)]
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_matches_authors_reference(ref, temperature):
    loss = nt_xent(as_tensor(ref["ntxent_z1"]), as_tensor(ref["ntxent_z2"]), temperature)
    assert loss.item() == pytest.approx(float(ref[f"ntxent_loss_T{temperature}"]), rel=1e-5)


@pytest.mark.parametrize(("n", "d", "temperature"), [(2, 3, 1.0), (5, 16, 0.5), (9, 8, 0.2)])
def test_matches_slow_reference(n, d, temperature):
    gen = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    expected = slow_nt_xent(z1, z2, temperature)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(expected.item(), rel=1e-5)


def test_limits():
    z = torch.randn(6, 4)
    # Identical views far from all others: the loss tends to zero as the temperature falls.
    basis = torch.eye(6)
    assert nt_xent(basis, basis, 0.01).item() < 1e-6
    # All projections equal: every class equally likely, loss log(2N - 1).
    same = torch.ones(6, 4)
    assert nt_xent(same, same, 0.5).item() == pytest.approx(math.log(11), rel=1e-6)
    # Scale of the projections does not matter (cosine similarity).
    assert nt_xent(z, 3 * z, 0.5).item() == pytest.approx(nt_xent(z, z, 0.5).item(), rel=1e-6)


def test_gradient_matches_slow_reference():
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    fast = torch.autograd.grad(nt_xent(z1, z2, 0.5), (z1, z2))
    slow = torch.autograd.grad(slow_nt_xent(z1, z2, 0.5), (z1, z2))
    for a, b in zip(fast, slow, strict=False):
        torch.testing.assert_close(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="must both be"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), 0.0)


def dead_row_view(view, dead: int):
    """``view``'s images through the tiny encoder with image ``dead``'s representation set to 0
    (a dead ReLU at small width)."""
    encoder = tiny_encoder()

    def represent(theta):
        h = encoder(view(theta))
        alive = torch.ones(h.shape[0], 1, dtype=h.dtype)
        alive[dead] = 0
        return h * alive

    return encoder, represent


@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_the_relative_penalty_is_the_penalty_over_the_batch_spread_in_float64(case):
    """Against P / s computed another way: P from each image's own Jacobian (0 for the dead
    row), s in numpy from the unit rows (the dead one at the origin). Fails on a spread over h
    rather than ĥ, on 1 − ‖μ‖² (wrong beside a zero row), and on a missing division."""
    _, view, theta, sampler = case
    encoder, represent = dead_row_view(view, dead=1)
    theta = theta.clone().requires_grad_()
    fresh = sampler(4 * 3).reshape(4, 3, -1)
    signs = rademacher((3, 5), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h = represent(theta)
    spread = batch_spread(h)
    relative = gradient_penalty(h, theta, fresh, signs, upper_limit=1e9, spread=spread)
    rows = h.detach().numpy()
    alive = np.linalg.norm(rows, axis=1) > 0
    unit = np.where(
        alive[:, None], rows / np.where(alive, np.linalg.norm(rows, axis=1), 1)[:, None], 0
    )
    s = np.mean(np.sum((unit - unit.mean(axis=0)) ** 2, axis=1))
    live = [0, 2]
    p = slow_penalty(encoder, view, theta, signs[live], fresh[:, live], True, rows=live)
    expected = p.item() * len(live) / 3 / s  # the dead row's terms are 0
    assert spread.item() == pytest.approx(s, rel=1e-12) and 0 < s < 1
    assert relative.item() == pytest.approx(expected, rel=1e-10)
    (grad,) = torch.autograd.grad(relative, [theta])  # it reaches the parameters' graph
    assert torch.isfinite(grad).all()


def smooth_batch_coupled_encoder() -> nn.Module:
    """Softplus and train-mode batch norm in float64: smooth, so finite differences are exact to
    about 8 digits, and coupled across the batch, as the spread is."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.Softplus(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 5), nn.BatchNorm1d(5),
    ).double().train()  # fmt: skip


def test_the_relative_penalty_weight_gradients_match_finite_differences():
    """Double backward through P / s against central differences (step 1e-6): a detached
    denominator (no −P/s²·∇s term) fails, and so would any other missing term."""
    _, view, theta, sampler = cases()[1]
    encoder = smooth_batch_coupled_encoder()
    fresh = sampler(2 * 3).reshape(2, 3, -1)
    signs = rademacher((3, 5), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    names = [name for name, _ in encoder.named_parameters()]

    def relative_of(detach: bool):
        def penalty(*weights):
            th = theta.clone().requires_grad_()
            h = functional_call(encoder, dict(zip(names, weights, strict=True)), (view(th),))
            spread = batch_spread(h)
            spread = spread.detach() if detach else spread
            return gradient_penalty(h, th, fresh, signs, upper_limit=1e9, spread=spread)

        return penalty

    weights = tuple(p.detach().clone().requires_grad_() for p in encoder.parameters())
    grads = torch.autograd.grad(relative_of(False)(*weights), weights)
    assert all(g.abs().sum() > 0 for g in grads[:-2])  # batch norm's shift cannot move ĥ's spread
    check = dict(eps=1e-6, atol=1e-8, rtol=1e-5)
    assert torch.autograd.gradcheck(relative_of(False), weights, **check)
    assert not torch.autograd.gradcheck(relative_of(True), weights, raise_exception=False, **check)


def test_the_clamp_of_the_relative_penalty_acts_on_the_quotient():
    """A limit between P and P / s holds the quotient at the limit, with no gradient; a clamp of
    P before the division would leave P / s above it."""
    _, view, theta, sampler = cases()[1]
    encoder = tiny_encoder()
    theta = theta.clone().requires_grad_()
    fresh, signs = sampler(10 * 3).reshape(10, 3, -1), rademacher((3, 5), dtype=torch.float64)

    def relative(limit):
        h = encoder(view(theta))
        return gradient_penalty(h, theta, fresh, signs, upper_limit=limit, spread=batch_spread(h))

    plain = gradient_penalty(encoder(view(theta)), theta, fresh, signs, upper_limit=1e9).item()
    free = relative(1e9)
    assert free.item() > plain  # unit rows spread less than 1
    torch.autograd.grad(free, list(encoder.parameters()))  # reaches the weights when free
    limit = (plain + free.item()) / 2
    clamped = relative(limit)
    assert clamped.item() == pytest.approx(limit)
    clamped.backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in encoder.parameters())
