"""Write a checkpoint's encoder on its own: ``python3 -m models.export CHECKPOINT OUT``.

OUT holds plain types (``torch.load(..., weights_only=True)``): the ``state_dict``, ``arch``,
``stem``, ``width``, ``dataset``, ``normalization`` (``{"mean": [...], "std": [...]}``, None for
Spirograph), ``representation_dim``, ``torchvision`` and the source's path and git hash. At width
1 it loads strictly into `torchvision_encoder`; at other widths only into `ResNetEncoder`. It is
not in `utils`, which imports no other package (tests/test_layout.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from augmentation.normalize import DATASET_STATS
from models.pretrained import load_encoder
from utils.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from utils.cli import DefaultsHelpFormatter, UsageError, run_cli

FORMAT = "invclr-encoder"


def torchvision_encoder(arch: str, stem: str) -> nn.Module:
    """torchvision's ResNet ``arch`` with this project's ``stem`` and no classifier: what an
    exported state dict of width 1 loads into strictly."""
    model = getattr(torchvision.models, arch)(weights=None)
    if stem in ("cifar", "stl"):
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    if stem == "cifar":
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model


def export_encoder(checkpoint: Path, out: Path) -> dict[str, Any]:
    """Write the encoder of ``checkpoint`` to ``out``; returns what was written."""
    encoder, run, epochs = load_encoder(checkpoint, torch.device("cpu"))
    stats = DATASET_STATS[run["dataset"]]
    state = {
        "format": FORMAT,
        "arch": encoder.arch,
        "stem": encoder.stem,
        "width": encoder.width,
        "dataset": run["dataset"],
        "normalization": None if stats is None else {"mean": list(stats[0]), "std": list(stats[1])},
        "representation_dim": encoder.representation_dim,
        "torchvision": encoder.width == 1,
        "epochs": epochs,
        "source": str(checkpoint),
        "git": load_checkpoint(checkpoint).get("git"),
        "state_dict": encoder.state_dict(),
    }
    save_checkpoint(state, out)
    return state


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Write a checkpoint's encoder on its own (weights_only, torchvision keys).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="a training checkpoint: a path, or a name in checkpoint/")
    p.add_argument("out", type=Path, help="the encoder file to write")
    return p


def main(args: argparse.Namespace) -> Path:
    source = resolve_checkpoint(args.checkpoint, "checkpoint")
    if args.out.resolve() == source.resolve():
        raise UsageError(f"{args.out} is the checkpoint itself; write the encoder elsewhere")
    state = export_encoder(source, args.out)
    where = (
        f"loads into torchvision.models.{state['arch']} with the {state['stem']} stem "
        "(models.export.torchvision_encoder)"
        if state["torchvision"]
        else f"width {state['width']:g} has no torchvision network: load it into "
        f"models.ResNetEncoder({state['arch']!r}, {state['stem']!r}, {state['width']:g})"
    )
    print(f"wrote {args.out}: {state['arch']} encoder of {state['dataset']}, {where}")
    return args.out


if __name__ == "__main__":
    run_cli(main, get_args_parser())
