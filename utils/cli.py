"""Command-line plumbing shared by the scripts: argument types, devices, and clean failures."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

import torch

from utils.memory import OutOfMemory, is_out_of_memory


class InputError(Exception):
    """Bad input the user can fix (a flag, a dataset folder, a checkpoint), one subclass per
    package; its message says what is wrong and what to do, and `run_cli` prints it on one line."""


class UsageError(InputError):
    """Bad input found after parsing."""


class TrainingError(Exception):
    """Training cannot go on (a NaN loss); the message names the step and last good checkpoint."""


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
    """Appends "(default: ...)" unless the help already explains the default or there is none to
    show (a switch that is off, a value decided later)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # `is`, not `in (None, False)`: 0 and 0.0 equal False, and their defaults must show.
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ParsedArgs(argparse.Namespace):
    """`ArgFileParser`'s namespace: the flags, plus ``given``, the destinations the command line or
    its ``@FILE`` set, even to their defaults (a resume must honour ``--lambda-gp 0``). ``given`` is
    a slot, so that ``vars(args)``, which a checkpoint saves, holds the flags alone."""

    __slots__ = ("given",)


def given_flags(args: argparse.Namespace) -> frozenset[str] | None:
    """The destinations the command line set (`ParsedArgs`), or None when that is unknown."""
    return getattr(args, "given", None)


class ArgFileParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` where ``@FILE`` stands for FILE's flags, each line split as by a
    shell (``#`` comments allowed); a later flag overrides the file's. configs/ holds such files."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fromfile_prefix_chars", "@")
        kwargs.setdefault(
            "epilog",
            "@FILE reads arguments from FILE, a flag and its value on each line (# comments "
            "allowed); flags given after @FILE override its values",
        )
        super().__init__(*args, **kwargs)

    def parse_known_args(
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """argparse's parse, into a `ParsedArgs` that knows which flags were given: a second parse
        with every default suppressed sets only those."""
        if namespace is not None:
            return super().parse_known_args(args, namespace)
        # @FILEs are read once, so that both parses see the same flags (a pipe reads only once).
        args = list(sys.argv[1:] if args is None else args)
        if self.fromfile_prefix_chars:
            args = self._read_args_from_files(args)
        parsed, extras = super().parse_known_args(args, ParsedArgs())
        # Optionals only: a suppressed positional default would be type-converted.
        defaults = [(action, action.default) for action in self._actions if action.option_strings]
        parser_defaults, self._defaults = self._defaults, {}
        try:
            for action, _ in defaults:
                action.default = argparse.SUPPRESS
            seen, _ = super().parse_known_args(args, argparse.Namespace())
        finally:
            for action, default in defaults:
                action.default = default
            self._defaults = parser_defaults
        parsed.given = frozenset(vars(seen))
        return parsed, extras

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        # A comment starts at a word that begins with `#`, as in a shell; `shlex`'s own comment
        # handling would also cut `run#1` short. Quoted words keep their quotes until split.
        lexer = shlex.shlex(arg_line, posix=False)
        lexer.whitespace_split, lexer.commenters = True, ""
        args: list[str] = []
        try:
            for word in lexer:
                if word.startswith("#"):
                    break
                args.extend(shlex.split(word))
        except ValueError as error:  # an unclosed quote
            self.error(f"argument file line {arg_line.strip()!r}: {error}")
        return args


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
    """Parse, run, and report known failures as one line on stderr (``--debug``: the traceback):
    exit status 2 for bad input and a missing resource (disk, memory), 1 for a run that cannot
    go on, 130 for a second Ctrl-C."""
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
    except Exception as error:
        known = isinstance(error, InputError | TrainingError | OutOfMemory)
        if debug or not (known or is_out_of_memory(error)):
            raise
        message = error_line(error)
        if not known:  # an allocation outside the steps that name themselves
            message = f"out of memory outside a named step ({message[:160]}); lower --batch-size"
        # Under torchrun every process meets the same bad input: rank 0 says it once. Other
        # failures may be one machine's own (a missing folder on one node), so each says its own.
        rank = int(os.environ.get("RANK", 0))
        if rank == 0:
            print(f"{parser.prog}: error: {message}", file=sys.stderr)
        elif not isinstance(error, UsageError):
            print(f"{parser.prog}: error on rank {rank}: {message}", file=sys.stderr)
        sys.exit(1 if isinstance(error, TrainingError) else 2)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        sys.exit(130)
