"""A checkpoint's trained encoder, or its architecture at random initialisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from datasets.sources import DATASETS
from models.resnet import ResNetEncoder
from utils.checkpoint import CheckpointError, load_checkpoint


def load_encoder(
    path: Path, device: torch.device, *, random_init: bool = False, seed: int | None = None
) -> tuple[nn.Module, dict[str, Any], int]:
    """The checkpoint's encoder (loaded strictly) in eval mode, the training arguments and the
    number of epochs it was trained for. ``seed`` (default: the run's) seeds ``random_init``."""
    state = load_checkpoint(path)
    run = state.get("args")
    if (
        not isinstance(run, dict)
        or run.get("dataset") not in DATASETS
        or {"arch", "width"} - set(run)
    ):
        raise CheckpointError(f"{path} lacks valid training arguments (dataset, arch, width)")
    torch.manual_seed(seed if seed is not None else run.get("seed", 0))
    try:
        encoder = ResNetEncoder(run["arch"], DATASETS[run["dataset"]].stem, run["width"])
        if not random_init:
            encoder.load_state_dict(state["encoder"], strict=True)
    except (KeyError, ValueError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:300]
        raise CheckpointError(
            f"{path}: encoder does not load as {run['arch']} ({reason})"
        ) from None
    return encoder.to(device).eval(), run, len(state.get("results", []))
