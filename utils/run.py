"""A training run's infrastructure, one call each: restore and save a run, meter its steps.

`RunState` holds what a checkpoint must carry for a run to continue bit for bit (the state dicts,
every random generator, the per-epoch results, the position inside an epoch) and writes it only
when the weights are finite. `StepMeter` keeps an epoch's running sums on the device, finds the
first non-finite step without a per-step host synchronisation, and draws the progress line.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from utils.checkpoint import (
    CheckpointError,
    WriteError,
    all_finite,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from utils.cli import TrainingError, UsageError, given_flags
from utils.distributed import any_process, average_gradients
from utils.rng import capture_rng, restore_rng

try:
    from tqdm import tqdm
except ImportError:  # a bare machine (the GPU check's python3 may lack it): no progress bar
    tqdm = None

# What --resume needs from a checkpoint; evaluation-only files lack some.
RESUME_KEYS = ("args", "encoder", "head", "optimizer", "results", "rng")


@dataclass
class Position:
    """Where a run stands: ``step`` steps of ``epoch`` done, with that epoch's running sums so
    far (contrastive loss, penalty, total loss, penalised steps at the clamp), penalised steps and
    seconds. Stored in checkpoints as plain types (``"next"``), so a run resumes mid-epoch where
    it stopped. Checkpoints written before the clamp was counted hold three sums: that epoch's
    count is then unknown (NaN, reported as null) if they were saved mid-epoch."""

    epoch: int
    step: int = 0
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    penalty_steps: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if len(self.totals) == 3:  # unknown mid-epoch; nothing to count yet at an epoch's start
            self.totals = [*self.totals, math.nan if self.step else 0.0]


class NonFiniteLoss(Exception):
    """The loss was NaN or infinite at global step ``step`` (counted from 0)."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step

    def explained(self, steps_per_epoch: int, last_good: Path | None) -> TrainingError:
        """The one-line error for the user: where it happened and what to resume from."""
        epoch, step = divmod(self.step, steps_per_epoch)
        return TrainingError(
            f"the loss became NaN or infinite at step {self.step + 1} (epoch {epoch + 1}, step "
            f"{step + 1}); stopped without saving. Last good checkpoint: {last_good or 'none'}; "
            "lower --base-lr or --lambda-gp and resume from it, or restart"
        )


class Stopped(Exception):
    """A stop was requested (SIGTERM, SIGINT) and the position saved mid-epoch."""


def stop_exit(signum: int | None, latest: Path, say: Callable[..., None] = print) -> SystemExit:
    """Say how to resume after a requested stop; the exit status is 128 + the signal's number.
    Another process may have received the signal first (``signum`` None): they stop together."""
    signum = signum or signal.SIGTERM
    say(
        f"stopped by {signal.Signals(signum).name}; saved {latest}. Resume with: python3 "
        f"invariance_by_gradient.py --resume {latest}",
        flush=True,
    )
    return SystemExit(128 + signum)


def git_info(with_diff: bool) -> dict[str, str | None]:
    """The commit of this code and, when asked, the uncommitted diff (None outside a git repo)."""

    def run(*cmd: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *cmd], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    return {
        "hash": commit.strip() if commit else None,
        "diff": run("diff", "HEAD") if with_diff else None,
    }


def load_run(name: str, checkpoint_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint ``--resume`` names, checked to hold a whole training run."""
    path = resolve_checkpoint(name, checkpoint_dir)
    state = load_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing or not isinstance(state["args"], dict):
        raise CheckpointError(
            f"{path} lacks {', '.join(missing) or 'valid args'}, so it cannot be resumed (it was "
            "not written by this training script); start a new run"
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
    path, state = load_run(target, args.checkpoint_dir)
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
    saved = {"width": 1.0, **saved}  # checkpoints from before --width hold the full network
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


class RunState:
    """Everything a checkpoint carries for a run to continue exactly: the state dicts of
    ``modules`` (None entries are saved as None), the generators, the run's arguments, its
    per-epoch ``results`` and the position. Only rank 0 (``lead``) writes."""

    def __init__(
        self,
        modules: dict[str, Any],
        generator: torch.Generator,
        args: argparse.Namespace,
        *,
        lead: bool,
        device: torch.device,
        git: dict[str, str | None],
    ) -> None:
        self.modules = modules
        self.generator = generator
        self.args = args
        self.lead = lead
        self.device = device
        self.git = git
        self.results: list[dict[str, Any]] = []
        self.last_good: Path | None = None

    def restore(
        self, resumed: tuple[Path, dict[str, Any]] | None, say: Callable[..., None] = print
    ) -> Position:
        """Load a checkpoint (path, state) into the modules and generators and say so; returns
        where the run stands (the start, without a checkpoint)."""
        if resumed is None:
            return Position(0)
        path, state = resumed
        for key, module in self.modules.items():
            if module is not None and state.get(key) is not None:
                module.load_state_dict(state[key])
        self.results = state["results"]
        self.last_good = path
        if not restore_rng(state["rng"], self.generator):
            say(
                f"note: the augmentation generator was saved on {state['args'].get('device')} "
                f"and does not carry over to {self.device.type}; it is reseeded from the "
                "checkpoint, so the random draws from here on differ from an uninterrupted run's"
            )
        # Version 1 checkpoints were written at epoch ends only.
        position = Position(**state.get("next", {"epoch": state["epoch"] + 1}))
        within = f", step {position.step + 1}" if position.step else ""
        lr = self.modules["optimizer"].param_groups[0]["lr"]
        say(f"resuming {self.args.filename} at epoch {position.epoch + 1}{within}, lr {lr:.4g}")
        return position

    @contextlib.contextmanager
    def stopped_on_write_failure(self) -> Iterator[None]:
        """A file of the run that cannot be written (a full disk, a quota, a size limit) stops
        the run, in one line that names the checkpoint it can continue from: training on would
        risk every epoch after the last save."""
        try:
            yield
        except WriteError as error:
            kept = (
                f"the last good checkpoint, {self.last_good}, is intact: make room and continue "
                f"with --resume {self.last_good}"
                if self.last_good is not None
                else "no checkpoint of this run was written yet"
            )
            raise WriteError(f"{error}; {kept}", error.path) from None

    def save(self, path: Path, at: Position) -> None:
        """Write the run at position ``at`` to ``path``, unless a weight is not finite."""
        finite = all(
            all_finite(m.state_dict())
            for m in self.modules.values()
            if isinstance(m, torch.nn.Module)
        )
        if any_process(not finite, self.device):  # without sync-bn, running statistics may differ
            raise TrainingError(
                f"the weights hold NaN or infinite values at epoch {at.epoch + 1}, step "
                f"{at.step}; not saved. Last good checkpoint: {self.last_good or 'none'}; "
                "lower --base-lr or --lambda-gp, or raise --gp-upper-limit less"
            )
        if self.lead:
            states = {k: m.state_dict() if m is not None else None for k, m in self.modules.items()}
            save_checkpoint(
                {
                    **states,
                    "epoch": at.epoch - 1,  # the last complete epoch
                    "next": asdict(at),
                    "args": vars(self.args),
                    "results": self.results,
                    "rng": capture_rng(self.generator),
                    "git": self.git,
                },
                path,
            )
        self.last_good = path


def optimizer_step(
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Backward, the gradients averaged over the processes, and the step; ``scaler`` (float16)
    scales the loss and skips a step whose gradients overflow."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        average_gradients(parameters)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        average_gradients(parameters)
        scaler.step(optimizer)  # unscales first; skips the step if a gradient is not finite
        scaler.update()


class StepMeter:
    """An epoch's running sums of the step values (contrastive loss, penalty, total loss, 1 when
    the penalty sat at its clamp), kept on the device from ``position`` on.

    `add` never waits for the device; `sync` reads the sums (a host synchronisation), raises
    `NonFiniteLoss` naming the first step whose values were not finite, refreshes the progress
    line and returns the position to save. `row` is the epoch's summary.
    """

    def __init__(
        self,
        position: Position,
        num_steps: int,
        batch_size: int,
        device: torch.device,
        *,
        show: bool = True,
    ) -> None:
        self.position = position
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.totals = torch.tensor(position.totals, device=device)
        self.penalty_steps = position.penalty_steps
        # Index of the first step with a non-finite value, kept on the device: no per-step sync.
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.start = time.perf_counter() - position.seconds
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.show = show
        self.bar = None

    def log_every(self, batches: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """(step, batch) pairs, steps counted in the epoch, behind a progress bar."""
        if tqdm is None:
            yield from enumerate(batches, start=self.position.step)
            return
        self.bar = tqdm(
            batches,
            total=self.num_steps,
            initial=self.position.step,
            desc=f"epoch {self.position.epoch + 1}",  # 1-based, as every line and file
            leave=False,
            dynamic_ncols=True,
            disable=not self.show,
        )
        try:
            yield from enumerate(self.bar, start=self.position.step)
        finally:  # a stop or an error mid-epoch leaves no half-drawn bar behind
            self.bar.close()

    def add(self, values: Tensor, global_step: int, penalised: bool) -> None:
        self.totals += values
        self.penalty_steps += penalised
        bad_now = (self.first_bad < 0) & ~torch.isfinite(values).all()
        self.first_bad = torch.where(bad_now, global_step, self.first_bad)

    def _rate(self, done: int, elapsed: float) -> float:
        images = (done - self.position.step) * self.batch_size
        return images / max(elapsed - self.position.seconds, 1e-9)

    def sync(self, done: int) -> Position:
        """The position after ``done`` steps of the epoch, with the values read and checked."""
        if (bad := int(self.first_bad)) >= 0:
            raise NonFiniteLoss(bad)
        totals = self.totals.tolist()
        c, g, t, _ = totals
        elapsed = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"c-loss {c / done:.3f} penalty {g / max(self.penalty_steps, 1):.4f} "
                f"loss {t / done:.3f} {self._rate(done, elapsed):.0f} img/s"
            )
        return Position(self.position.epoch, done, totals, self.penalty_steps, elapsed)

    def row(self, gp_upper_limit: float) -> dict[str, float]:
        """The epoch's means, speed and time, and how often the penalty sat at its clamp."""
        if self.bar is not None:
            self.bar.close()
        elapsed = time.perf_counter() - self.start
        c, g, t, clamped = self.totals.tolist()
        steps = max(self.num_steps, 1)
        row = {
            "contrastive_loss": c / steps,
            "penalty": g / max(self.penalty_steps, 1),
            "loss": t / steps,
            "images_per_s": self._rate(self.num_steps, elapsed),
            "time_s": elapsed,
        }
        if self.device.type == "cuda":  # this epoch's peak (of a resumed epoch: since the resume)
            row["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if self.penalty_steps:
            # The share of penalised steps at which the clamp passed no gradient (NaN: unknown,
            # an epoch resumed from a checkpoint written before it was counted).
            fraction = clamped / self.penalty_steps
            row["clamp_fraction"] = None if math.isnan(fraction) else fraction
            row["gp_upper_limit"] = gp_upper_limit
        return row
