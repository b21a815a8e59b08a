"""Whether two training checkpoints hold bit-identical weights: the proof a refactor owes.

    python3 -m tools.compare_checkpoints before/cifar.pth after/cifar.pth

Compares every encoder and head tensor with `torch.equal` and the per-epoch results with their
timings left out; prints one line and exits non-zero unless both are identical. docs/design.md
gives the fixed-seed runs it was used on.
"""

from __future__ import annotations

import argparse
import sys

import torch

from utils.checkpoint import CheckpointError, load_checkpoint
from utils.cli import DefaultsHelpFormatter, run_cli

TIMINGS = ("time_s", "wall_s", "images_per_s", "peak_gpu_memory_gb")  # vary with the machine


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter
    )
    p.add_argument("first", help="a checkpoint written by invariance_by_gradient.py")
    p.add_argument("second", help="the checkpoint to compare it with")
    return p


def compare(first: dict, second: dict) -> tuple[int, int, bool]:
    """(identical tensors, tensors, whether the results rows agree apart from timings)."""
    for state in (first, second):
        missing = [key for key in ("encoder", "head", "results") if key not in state]
        if missing:
            raise CheckpointError(
                f"a file lacks {', '.join(missing)}: compare two training checkpoints"
            )
    same = total = 0
    for part in ("encoder", "head"):
        if first[part].keys() != second[part].keys():
            return 0, len(first[part]), False
        for key, tensor in first[part].items():
            total += 1
            same += torch.equal(tensor, second[part][key])

    def rows(state: dict) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in state["results"]]

    return same, total, rows(first) == rows(second)


def main(args: argparse.Namespace) -> bool:
    same, total, rows = compare(load_checkpoint(args.first), load_checkpoint(args.second))
    print(
        f"{args.first} vs {args.second}: {same}/{total} encoder and head tensors bit-identical; "
        f"per-epoch results (timings aside) {'identical' if rows else 'DIFFERENT'}"
    )
    return same == total and rows


def verdict(args: argparse.Namespace) -> None:
    """`main` with its answer as the exit status: 0 when identical, 1 when not."""
    sys.exit(0 if main(args) else 1)


if __name__ == "__main__":
    run_cli(verdict, get_args_parser())
