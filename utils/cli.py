"""Command-line plumbing shared by the scripts: argument types, devices, and clean failures."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from datasets.paths import DatasetError
from utils.checkpoint import CheckpointError


class UsageError(Exception):
    """Bad input found after parsing; the message says what is wrong and what to do."""


class TrainingError(Exception):
    """Training cannot go on (a NaN loss); the message names the step and the last good
    checkpoint."""


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


# Seeds are mixed with epochs and indices (seed · 1,000,003 + epoch) before they reach torch's
# 64-bit generators; 32 bits leave that room.
seed_value = int_at_least(0, 2**32 - 1)


def file_stem(text: str) -> str:
    """A file name without folders: the run's files all go to --checkpoint-dir."""
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(
            f"expected a plain name without folders, got {text!r}; put the folder in "
            "--checkpoint-dir"
        )
    return text


def float_at_least(minimum: float, *, strict: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or (value <= minimum if strict else value < minimum):
            bound = "greater than" if strict else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def width_multiplier(text: str) -> float:
    """A finite channel multiplier that leaves the first stage (64 channels at 1) one or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and round(64 * value) >= 1):
        raise argparse.ArgumentTypeError(
            f"must be finite and keep a channel in the first stage (64 × width rounding to 1 or "
            f"more), got {text}"
        )
    return value


def proportion(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--device and --num-workers, which every script takes."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when available, else CPU",
    )
    parser.add_argument(
        "--num-workers",
        type=int_at_least(0),
        default=2,
        help="data-loader worker processes (ImageNet decoding)",
    )


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to a flag's help unless the help already explains its default
    or there is nothing to show (a switch that is off, a value decided later)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def error_line(error: BaseException) -> str:
    """The first line of ``error``'s message; for an error a DataLoader worker re-raised, the
    original message, which torch puts on the last line of the worker's traceback."""
    lines = str(error).strip().splitlines()
    if not lines:
        return repr(error)
    if lines[0].startswith("Caught ") and len(lines) > 1:
        qualified, sep, original = lines[-1].partition(": ")
        if sep and qualified.rsplit(".", 1)[-1] == type(error).__name__:
            return original
    return lines[0]


def run_cli(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser) -> None:
    """Parse, run, and turn the project's known failures into one line on stderr: exit status 2
    for bad input, 1 for a run that cannot go on, 130 for a second Ctrl-C. ``--debug`` lets the
    exception through with its traceback instead."""
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error instead of one line"
    )

    def one_line_error(message: str) -> None:
        # argparse would print the whole usage block first; one line says it, --help has the rest.
        parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")

    parser.error = one_line_error
    args = parser.parse_args()
    debug = vars(args).pop("debug")
    try:
        main(args)
    except (
        DatasetError,
        CheckpointError,
        UsageError,
        TrainingError,
        torch.OutOfMemoryError,
    ) as error:
        if debug:
            raise
        message = error_line(error)
        if isinstance(error, torch.OutOfMemoryError):
            message = f"out of memory ({message[:160]}); lower --batch-size"
        # Under torchrun every process meets the same bad input: rank 0 says it once. Other
        # failures may be one machine's own (a missing folder on one node), so each says its own.
        rank = int(os.environ.get("RANK", 0))
        if rank == 0:
            print(f"{parser.prog}: error: {message}", file=sys.stderr)
        elif not isinstance(error, UsageError):
            print(f"{parser.prog}: error on rank {rank}: {message}", file=sys.stderr)
        sys.exit(1 if isinstance(error, TrainingError | torch.OutOfMemoryError) else 2)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        sys.exit(130)
