"""A training run's infrastructure, one call each: restore and save a run, meter its steps.

`RunState` holds what a checkpoint must carry for a run to continue bit for bit (the state dicts,
every random generator, the per-epoch results, the position inside an epoch) and writes it only
when the weights are finite. `StepMeter` keeps an epoch's running sums on the device, finds the
first non-finite step without a per-step host synchronisation, and draws the progress line.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from utils.checkpoint import (
    WriteError,
    all_finite,
    save_checkpoint,
)
from utils.cli import TrainingError
from utils.distributed import any_process, average_gradients
from utils.memory import OutOfMemory, is_out_of_memory, memory_error, out_of_memory
from utils.rng import capture_rng, restore_rng

try:
    from tqdm import tqdm
except ImportError:  # a bare machine (the GPU check's python3 may lack it): no progress bar
    tqdm = None

T = TypeVar("T")


@dataclass
class Position:
    """Where a run stands: ``step`` steps of ``epoch`` done, with that epoch's running sum of each
    step value, the steps each was counted on, and seconds (empty lists: none yet). Stored in
    checkpoints as plain types (``"next"``), so a run resumes mid-epoch where it stopped."""

    epoch: int
    step: int = 0
    totals: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    seconds: float = 0.0


class NonFiniteLoss(Exception):
    """The loss was NaN or infinite at global step ``step`` (counted from 0)."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step

    def explained(self, steps_per_epoch: int, last_good: Path | None, advice: str) -> TrainingError:
        """The one-line error for the user: where it happened, what to resume from, and
        ``advice`` (what to change)."""
        epoch, step = divmod(self.step, steps_per_epoch)
        return TrainingError(
            f"the loss became NaN or infinite at step {self.step + 1} (epoch {epoch + 1}, step "
            f"{step + 1}); stopped without saving. Last good checkpoint: {last_good or 'none'}; "
            f"{advice} and resume from it, or restart"
        )


class Stopped(Exception):
    """A stop was requested (SIGTERM, SIGINT) and the position saved mid-epoch."""


def stop_exit(
    signum: int | None, latest: Path, script: str, say: Callable[..., None] = print
) -> SystemExit:
    """Say how to resume ``script`` after a requested stop; the exit status is 128 + the signal's
    number. Another process may have received the signal first (``signum`` None): they stop
    together."""
    signum = signum or signal.SIGTERM
    name = signal.Signals(signum).name
    say(f"stopped by {name}; saved {latest}. Resume with: python3 {script} --resume {latest}",
        flush=True)  # fmt: skip
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


class RunState:
    """Everything a checkpoint carries for a run to continue exactly: the state dicts of
    ``modules`` (None entries are saved as None), the generators, the run's arguments, its
    per-epoch ``results`` and the position. Only rank 0 (``lead``) writes. ``advice`` says what
    to change when the weights stop being finite."""

    def __init__(
        self,
        modules: dict[str, Any],
        generator: torch.Generator,
        args: argparse.Namespace,
        *,
        lead: bool,
        device: torch.device,
        git: dict[str, str | None],
        advice: str,
    ) -> None:
        self.modules = modules
        self.advice = advice
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
        position = Position(**state["next"])
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
                else "no checkpoint of this run was written yet: make room and run it again"
            )
            raise WriteError(f"{error}; {kept}", error.path) from None

    @contextlib.contextmanager
    def stopped_on_out_of_memory(self, where: str, advice: str) -> Iterator[None]:
        """A failed allocation inside (`utils.memory`) stops the run in one line: ``where``,
        ``advice``, and the checkpoint it can continue from. Nothing of the failed step is
        saved: the last checkpoint stays as it was written."""
        try:
            yield
        except Exception as error:
            if isinstance(error, OutOfMemory) or not is_out_of_memory(error):
                raise
            kept = (
                f"the last good checkpoint, {self.last_good}, is intact (--resume keeps its "
                "--batch-size; more processes or a smaller batch under torchrun continue it)"
                if self.last_good is not None
                else "no checkpoint of this run was written yet"
            )
            raise memory_error(error, where, f"{advice}; {kept}") from error

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
                f"{self.advice} and resume from it, or restart"
            )

        def write() -> None:
            if not self.lead:
                return
            states = {k: m.state_dict() if m is not None else None for k, m in self.modules.items()}
            kept = (
                f"the last good checkpoint, {self.last_good}, is intact" if self.last_good else ""
            )
            with out_of_memory(f"saving {path}", f"free memory and resume; {kept or 'none yet'}"):
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

        shared_write(write, self.device)
        self.last_good = path


def shared_write(write: Callable[[], T], device: torch.device) -> T:
    """``write()`` (which writes files on rank 0 alone), with its failure shared: a file rank 0
    cannot write stops every process, not rank 0 alone while the others wait in their next
    collective. One collective under torchrun; nothing more for one process."""
    failure, result = None, None
    try:
        result = write()
    except WriteError as error:
        failure = error
    if any_process(failure is not None, device):
        raise failure or WriteError(
            "stopped with rank 0, which could not write a file of the run (its line says which)",
            None,
        )
    return result  # type: ignore[return-value]


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
    """An epoch's running sum of each step value, kept on the device from ``position`` on, and
    the steps each was counted on. ``values`` names them in the order `add` receives them, each
    with its label in the progress line (None: not shown).

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
        values: dict[str, str | None],
        *,
        show: bool = True,
    ) -> None:
        self.position = position
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.values = values
        self.totals = torch.tensor(position.totals or [0.0] * len(values), device=device)
        self.counts = position.counts or [0] * len(values)
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

    def add(self, values: Tensor, global_step: int, counted: Iterable[bool]) -> None:
        """One step's ``values`` (a device tensor, zero where not ``counted``)."""
        self.totals += values
        self.counts = [count + bool(c) for count, c in zip(self.counts, counted, strict=True)]
        bad_now = (self.first_bad < 0) & ~torch.isfinite(values).all()
        self.first_bad = torch.where(bad_now, global_step, self.first_bad)

    def _rate(self, done: int, elapsed: float) -> float:
        images = (done - self.position.step) * self.batch_size
        return images / max(elapsed - self.position.seconds, 1e-9)

    def _means(self, totals: list[float]) -> dict[str, float]:
        """Each value's mean over the steps it was counted on; one counted on none is left out."""
        return {name: total / count for name, total, count in
                zip(self.values, totals, self.counts, strict=True) if count}  # fmt: skip

    def sync(self, done: int) -> Position:
        """The position after ``done`` steps of the epoch, with the values read and checked."""
        if (bad := int(self.first_bad)) >= 0:
            raise NonFiniteLoss(bad)
        totals = self.totals.tolist()
        elapsed = time.perf_counter() - self.start
        if self.bar is not None:
            shown = [f"{self.values[k]} {v:.4g}" for k, v in self._means(totals).items()
                     if self.values[k]]  # fmt: skip
            self.bar.set_postfix_str(f"{' '.join(shown)} {self._rate(done, elapsed):.0f} img/s")
        return Position(self.position.epoch, done, totals, list(self.counts), elapsed)

    def row(self) -> dict[str, float]:
        """The epoch's means (`_means`), speed and time."""
        if self.bar is not None:
            self.bar.close()
        elapsed = time.perf_counter() - self.start
        row = {
            **self._means(self.totals.tolist()),
            "images_per_s": self._rate(self.num_steps, elapsed),
            "time_s": elapsed,
        }
        if self.device.type == "cuda":  # this epoch's peak (of a resumed epoch: since the resume)
            row["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return row
