"""Shared fixtures: the authors' reference numbers (spec section 9)."""

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
# Copies of ../shared/reference/ (spec section 9), so that a clone tests without the shared folder.
REFERENCE = DATA / "invclr_reference.npz"
PENALTY_REFERENCE = DATA / "invclr_penalty_reference.npz"


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def ref() -> dict[str, np.ndarray]:
    return read_npz(REFERENCE)


@pytest.fixture(scope="session")
def penalty_ref() -> dict[str, np.ndarray]:
    """The authors' gradient penalty through train-mode batch norm, in float64."""
    return read_npz(PENALTY_REFERENCE)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array))


def assert_close_rel(
    actual: torch.Tensor, expected, rtol: float = 1e-5, atol: float = 1e-7
) -> None:
    """Agreement to ``rtol`` relative, with a tiny absolute floor for entries near zero."""
    expected = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    torch.testing.assert_close(actual.detach().cpu(), expected, rtol=rtol, atol=atol)
