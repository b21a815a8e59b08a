"""Running the study's jobs: each job's command to completion (its output in `<out>/<job>.log`),
then its record; a job whose record exists is skipped and a training run resumes its checkpoint
(`--resume auto`), so the study spans sessions: rerun the same command.

Checkpoints are not in git. When an evaluation needs one that is gone, its run is retrained
with its record's command, in a scratch folder so that no file of the run is touched before the
retrained one is whole. Where every epoch's losses equal the record's bit for bit, the checkpoint
is the recorded run's: the record and its evaluations' records stay. Where they do not (another
CPU model sums floats in another order: the records name their machine), the retrained run is a
new run, recorded as such, and its evaluations are redone. So a retrain waits for the machine its
record names (`kind`: CPU model, AVX-512, AMX, threads and torch, what orders the sums): on
another one its jobs are deferred, named, and every other job runs; `--retrain-anywhere` retrains
them here, as new runs. The same kind makes the same run likely, not certain: the retrain's
epochs are compared all the same.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from study.plan import Job
from study.records import (
    KIND,
    REPO,
    TIMING,
    command_line,
    git_commit,
    in_words,
    last_json,
    machine,
    now,
    shown,
    write_record,
)
from utils.checkpoint import ensure_writable
from utils.cli import UsageError
from utils.metrics import read_metrics


def run(command: list[str], log: Path) -> float:
    """Run a project script to completion, its output into ``log``; returns the seconds taken.
    A failure is a `UsageError` naming the log."""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, *command], cwd=REPO, stdout=out, stderr=out)
    if code != 0:
        raise UsageError(f"`{command_line(command)}` failed (exit {code}); see {log}")
    return time.perf_counter() - start


def facts(seconds: float, load: float) -> dict[str, Any]:
    """What every record says of how it was made."""
    return {
        "wall_s": round(seconds, 1),
        # Two cores: another job beside this one halves its speed. Times measured with a load
        # average well above the cores' number are not costs.
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "machine": machine(),
        "commit": git_commit(),
        "date": now(),
    }


def train(job: Job, folder: Path, log: Path) -> dict[str, Any]:
    """Run training ``job`` with its checkpoints in ``folder``; returns its record."""
    command = list(job.command)
    command[command.index("--checkpoint-dir") + 1] = shown(folder)
    load = os.getloadavg()[0]
    seconds = run(command, log)
    epochs = read_metrics(folder / f"{job.name}.metrics.jsonl")
    record = {"command": command_line(job.command), "epochs": epochs}
    return record | {"train_time_s": epochs[-1]["wall_s"]} | facts(seconds, load)


def evaluate(job: Job, log: Path) -> dict[str, Any]:
    load = os.getloadavg()[0]
    seconds = run(job.command, log)
    record = {"command": command_line(job.command), "trained": job.training_date()}
    record["result"] = last_json(log)
    record["result"].pop("checkpoint", None)  # a path on the machine that ran it
    return record | facts(seconds, load)


def first_difference(new: list[dict], old: list[dict]) -> str | None:
    """Where two runs' per-epoch rows part, timings aside; None where they never do."""
    if len(new) != len(old):
        return f"{len(new)} epochs where the record has {len(old)}"
    for a, b in zip(new, old, strict=True):
        for key in sorted((set(a) | set(b)) - set(TIMING)):
            if a.get(key) != b.get(key):
                here, there = a.get(key), b.get(key)
                return f"epoch {a['epoch']}'s {key} is {here!r} where the record has {there!r}"
    return None


def retrain(training: Job, out: Path, missing: Path) -> None:
    """Train ``training`` again from its record's command (the plan runs a training before its
    evaluations, so the record exists), then keep the record or replace it."""
    old = training.read()
    # An interrupted retrain resumes from the scratch folder's checkpoint.
    scratch = out / f".retrain-{training.name}"
    scratch.mkdir(parents=True, exist_ok=True)
    new = train(training, scratch, out / f"{training.name}.retrain.log")
    parted = first_difference(new["epochs"], old["epochs"])
    said = f"{training.name}: retrained from its record, {shown(missing)} being gone; "
    if parted is None:
        said += (f"all {len(old['epochs'])} epochs equal the record's bit for bit: the record and "
                 "its evaluations' records stay")  # fmt: skip
    else:
        # The old run's files go first and the new record before the new files: a stop at any
        # point leaves no checkpoint beside a record of another run.
        for path in out.glob(f"{training.name}[._]*"):
            if path.suffix in (".pth", ".jsonl"):
                path.unlink()
        write_record(training.record, new)
        said += (f"{parted} (recorded on {in_words(old['machine'])}, retrained on "
                 f"{in_words(new['machine'])}): a new run, recorded as such; its evaluations "
                 "are redone")  # fmt: skip
    for path in scratch.glob(f"{training.name}*"):
        if path.suffix in (".pth", ".jsonl"):
            os.replace(path, out / path.name)
    shutil.rmtree(scratch)
    print(said, flush=True)


@functools.cache
def here() -> tuple:
    """This machine's kind (read once: `plan` asks for every job)."""
    return tuple(machine().get(k) for k in KIND)


def execute(job: Job, out: Path) -> dict[str, Any]:
    """Run ``job`` (its output in ``out/<name>.log``) and write its record."""
    if job.checkpoint is not None and not job.checkpoint.is_file():
        retrain(job.training, out, job.checkpoint)
    log = out / f"{job.name}.log"
    record = train(job, out, log) if job.kind == "train" else evaluate(job, log)
    write_record(job.record, record)
    return record


def elsewhere(job: Job) -> str | None:
    """The machine, in words, on which ``job``'s run must be retrained to stay the recorded run,
    where its checkpoint is gone and this machine is not that kind; None otherwise."""
    if job.checkpoint is None or job.checkpoint.is_file() or not job.training.done:
        return None
    recorded = job.training.read()["machine"]
    return None if tuple(recorded.get(k) for k in KIND) == here() else in_words(recorded)


def run_jobs(jobs: list[Job], out: Path, retrain_anywhere: bool = False) -> list[Job]:
    """Run every job of ``jobs`` that is not done, in order; a retrained run that turns out a new
    run makes its evaluations undone again, and they are run again in their turn. A job whose
    run must be retrained on another kind of machine is deferred unless ``retrain_anywhere``."""
    ensure_writable(out, "--out")  # the logs and checkpoints: before hours of work, not after
    ran: list[Job] = []
    deferred: dict[str, list[str]] = {}  # training -> its deferred jobs
    for job in [] if retrain_anywhere else [j for j in jobs if not j.done]:
        kind = elsewhere(job)
        if kind is not None:
            deferred.setdefault(f"{job.training.name} (recorded on {kind})", []).append(job.name)
    waiting = {name for names in deferred.values() for name in names}
    for training, names in deferred.items():
        print(f"deferred: {', '.join(names)}: its checkpoint is gone and {training} would be "
              f"retrained on {in_words(machine())}, another order of float sums; run it on that "
              "machine, or give --retrain-anywhere to make it a new run here",
              flush=True)  # fmt: skip
    while (
        job := next((j for j in jobs if not j.done and j.name not in waiting), None)
    ) is not None:
        if ran and job is ran[-1]:
            raise UsageError(
                f"{job.name} ran but its record does not count; see {shown(job.record)}"
            )
        print(f"[{len(ran) + 1}] {job.name}: {command_line(job.command)}", flush=True)
        record = execute(job, out)
        print(f"  wrote {shown(job.record)} in {record['wall_s'] / 60:.1f} min", flush=True)
        ran.append(job)
    if waiting:
        print(f"{len(waiting)} jobs deferred (above); every other job is done", flush=True)
    return ran
