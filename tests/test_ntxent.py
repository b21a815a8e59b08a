import math

import pytest
import torch
from conftest import as_tensor

from utils.ntxent import nt_xent


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
