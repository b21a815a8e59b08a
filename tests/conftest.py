"""Shared fixtures: the authors' reference numbers (spec section 9)."""

from pathlib import Path

import numpy as np
import pytest
import torch

REFERENCE = Path(__file__).parent / "data" / "invclr_reference.npz"


@pytest.fixture(scope="session")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array))


def assert_close_rel(
    actual: torch.Tensor, expected, rtol: float = 1e-5, atol: float = 1e-7
) -> None:
    """Agreement to ``rtol`` relative, with a tiny absolute floor for entries near zero."""
    expected = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    torch.testing.assert_close(actual.detach().cpu(), expected, rtol=rtol, atol=atol)
