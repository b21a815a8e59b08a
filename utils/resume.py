"""Which run ``--resume`` continues, and with which arguments: the checkpoint's run flags, the
command line's resumable ones on top (`merge_resumed_args`); ``--resume auto`` for a command
that both starts and restarts a run."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from utils.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from utils.cli import UsageError, given_flags
from utils.run import Position

# What --resume needs from a checkpoint; evaluation-only files lack some.
RESUME_KEYS = ("args", "encoder", "head", "optimizer", "results", "rng", "next")


def load_run(
    name: str, checkpoint_dir: str | Path, parser: argparse.ArgumentParser
) -> tuple[Path, dict[str, Any]]:
    """The checkpoint ``--resume`` names, checked to hold a whole training run of this version:
    every key, every run flag of ``parser``, and a position of `Position`'s shape."""
    path = resolve_checkpoint(name, checkpoint_dir)
    state = load_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing or not isinstance(state["args"], dict):
        raise CheckpointError(
            f"{path} lacks {', '.join(missing) or 'valid args'}, so it cannot be resumed (it was "
            "not written by this version of the training script); start a new run"
        )
    run_flags = set(vars(parser.parse_args([]))) - resumable_flags(parser)
    lacking = sorted("--" + key.replace("_", "-") for key in run_flags - set(state["args"]))
    at = state["next"] if isinstance(state["next"], dict) else {}
    shape = {f.name for f in fields(Position)}
    if lacking or set(at) != shape or len(at["totals"]) != len(at["counts"]):
        what = f"the run flags {', '.join(lacking)}" if lacking else "a position of this version"
        raise CheckpointError(
            f"{path} lacks {what}: an older version of the training script wrote it, which this "
            "one does not resume; start a new run"
        )
    return path, state


def resume_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[argparse.Namespace, tuple[Path, dict[str, Any]] | None]:
    """With ``--resume``: the run's arguments merged from its checkpoint (`merge_resumed_args`)
    and the checkpoint (path, state); without: ``args`` unchanged and None.

    ``--resume auto`` continues ``<checkpoint-dir>/<filename>.pth`` when it exists and starts a
    new run when it does not, so that one unchanged command serves a first start, a requeued job
    and a torchrun restart (``--preview`` ignores it)."""
    target = args.resume
    if target == "auto":
        if args.overwrite:
            raise UsageError(
                "--resume auto continues <filename>.pth when it exists and --overwrite replaces "
                "it; drop one of them"
            )
        candidate = Path(args.checkpoint_dir) / f"{args.filename}.pth"
        if args.preview or not candidate.is_file():
            return args, None
        target = str(candidate)
    if not target:
        return args, None
    path, state = load_run(target, args.checkpoint_dir, parser)
    return merge_resumed_args(args, state["args"], parser), (path, state)


def merge_resumed_args(
    args: argparse.Namespace, saved: dict[str, Any], parser: argparse.ArgumentParser
) -> argparse.Namespace:
    """The checkpoint's run arguments, with the command line's resumable flags on top.

    The resumable flags are those of ``parser``'s argument group titled "resumable"; every other
    flag defines the run, and giving it a value other than the checkpoint's is an error. A flag
    counts as given when the command line typed it, whatever its value (`given_flags`); for a
    namespace that does not say, when its value differs from the parser's default."""
    defaults = vars(parser.parse_args([]))
    resumable = resumable_flags(parser)
    given = given_flags(args)
    merged = dict(saved)
    for key, value in vars(args).items():
        explicit = key in given if given is not None else value != defaults.get(key)
        if key in resumable or key not in saved:
            if explicit or key not in saved:
                merged[key] = value
        elif explicit and value != saved[key]:
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"{flag} {value} conflicts with the resumed run's {saved[key]}; drop {flag} to "
                "continue that run, or start a new one"
            )
    return argparse.Namespace(**{k: merged[k] for k in defaults})


def resumable_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The destinations of ``parser``'s "resumable" argument group."""
    groups = [g for g in parser._action_groups if g.title == "resumable"]
    return {action.dest for group in groups for action in group._group_actions}
