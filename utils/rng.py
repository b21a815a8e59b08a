"""Capture and restore every random number generator a run may draw from (augmentation, torch CPU
and CUDA, and Python's and numpy's for code it calls), as plain types that a checkpoint loads with
``torch.load(weights_only=True)``, so that a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """The states of ``generator`` and of the global generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "augment": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> bool:
    """Put back what `capture_rng` captured; only the augmentation and CPU states are required.

    Returns False if the augmentation state is from another kind of device (a GPU run resumed on
    the CPU, or the reverse): ``generator`` is then seeded from the saved CPU state instead, so the
    run stays reproducible, though not the same."""
    try:
        generator.set_state(state["augment"])
        exact = True
    except RuntimeError:
        saved_cpu = torch.Generator()
        saved_cpu.set_state(state["torch"])
        generator.manual_seed(int(torch.randint(2**62, (), generator=saved_cpu)))
        exact = False
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    return exact


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator for one epoch's data order: distinct for every (seed, epoch) pair, so that
    seeds and epochs never share an order (seeds are below 2³², utils/cli.py)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)
