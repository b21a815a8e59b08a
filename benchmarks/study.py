"""The decisive small-compute study (docs/results.md): InvCLR against SimCLR on every claim of the
paper, with enough seeds and length to tell, and the cheap penalty (--gp-every 4) against the
exact one.

    python3 -m benchmarks.study                        # run what is missing, both datasets
    python3 -m benchmarks.study --datasets spirograph  # one half
    python3 -m benchmarks.study --plan                 # list the jobs, done or not; run nothing

Every job is one command of the project's own scripts: a training run, or an evaluation of one
saved checkpoint. Each writes a record under `docs/results/<dataset>/` when it ends (the
command, the evaluation's JSON or the per-epoch metrics, the wall time, the machine, the load
average before and after, the commit); a job whose record exists is skipped, and a training run
resumes its checkpoint (--resume auto), so the study spans sessions: rerun the same command.
Checkpoints and logs go to `--out` (default results/, ignored by git).

The jobs, in the order they run (paired by seed, so that a stopped study is a smaller one, not
a lopsided one): for each seed, SimCLR, InvCLR (the paper's λ and upper limit) and InvCLR with
--gp-every 4 are trained, with a checkpoint every 5 epochs; every checkpoint gets the probe and
the conditional variance (both computations); the final checkpoints of seeds 0-2 of SimCLR and
InvCLR get the whole suite; the random-initialisation encoder of each seed gets what the trained
ones of that seed get. Then, on Spirograph, the λ sweep of the paper's conditional-variance
figure, one seed (λ = 1e-2 is InvCLR's seed 0); on both datasets, InvCLR without its upper limit,
every seed (each checkpoint evaluated as the trained ones are).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.cli import UsageError, run_cli, seed_value
from utils.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent

# The laptop settings of the earlier table: quarter-width ResNet-18, batch 64, base-lr 1.5 and a
# constant rate, 5,000 Spirograph images and 10,000 CIFAR-10 JPEGs.
PROTOCOL: dict[str, dict[str, Any]] = {
    "spirograph": {
        "train": [
            "--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25",
            "--proportion", "0.05", "--batch-size", "64", "--base-lr", "1.5",
            "--num-epochs", "20", "--save-freq", "5", "--test-freq", "0",
        ],
        "methods": {
            "simclr": ["--lambda-gp", "0"],
            "invclr": ["--lambda-gp", "1e-2", "--gp-upper-limit", "1000"],
            "gp4": ["--lambda-gp", "1e-2", "--gp-upper-limit", "1000", "--gp-every", "4"],
        },
        # The conditional-variance figure's weights; 1e-2 is "invclr" itself.
        "sweep": {
            f"lambda{weight}": ["--lambda-gp", weight, "--gp-upper-limit", "1000"]
            for weight in ("1e-4", "1e-3", "1e-1")
        },
        # InvCLR without its clamp (a limit no step reaches), every seed: the paper's limit of
        # 1000 sits at some seeds' first steps, where a clamped penalty has no gradient.
        "ablations": {"nolimit": ["--lambda-gp", "1e-2", "--gp-upper-limit", "1e9"]},
        "script": "lbfgs_linear_clf_spirograph.py",
        "evaluate": ["--componentwise"],  # the MSE of each regression target too
        "metric": "mse",
    },
    "cifar10": {
        "train": [
            "--dataset", "cifar10", "--arch", "resnet18", "--width", "0.25",
            "--proportion", "0.2", "--batch-size", "64", "--base-lr", "1.5",
            "--num-epochs", "10", "--save-freq", "5", "--test-freq", "0",
        ],
        "methods": {
            "simclr": ["--lambda-gp", "0"],
            "invclr": ["--lambda-gp", "0.1", "--gp-upper-limit", "1"],
            "gp4": ["--lambda-gp", "0.1", "--gp-upper-limit", "1", "--gp-every", "4"],
        },
        "sweep": {},
        # The paper's limit of 1 held the penalty on 23% of seed 0's first epoch here.
        "ablations": {"nolimit": ["--lambda-gp", "0.1", "--gp-upper-limit", "1e9"]},
        "script": "lbfgs_linear_clf.py",
        "evaluate": [],
        "metric": "accuracy",
    },
}  # fmt: skip
SEEDS = (0, 1, 2, 3, 4)
SUITE_SEEDS = (0, 1, 2)  # the whole suite on these seeds' final SimCLR and InvCLR checkpoints
SUITE_METHODS = ("simclr", "invclr")
SWEEP_SEED = 0
# Every evaluation: the probe (its reg-weight picked on held-out training images) and the
# conditional variance, as the paper defines it and as the authors computed it.
PROBE = ["--reg-weight", "auto"]
VARIANCE = ["--conditional-variance", "--authors-variance"]


def machine() -> dict[str, Any]:
    """What the numbers ran on: processor, the instruction sets that change CPU speed, torch."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": torch.get_num_threads(),
        "avx512": "avx512f" in flags,
        "amx": "amx_tile" in flags,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def shown(path: Path) -> str:
    """A path as a command written into a record shows it: relative to the repository."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def run(command: list[str], log: Path) -> float:
    """Run a project script to completion, its output into ``log``; returns the seconds taken.
    A failure is a `UsageError` naming the log."""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, *command], cwd=REPO, stdout=out, stderr=out)
    if code != 0:
        raise UsageError(f"`python3 {shlex.join(command)}` failed (exit {code}); see {log}")
    return time.perf_counter() - start


def last_json(log: Path) -> dict[str, Any]:
    """The evaluation script's JSON line: the last line of its log that is a JSON object."""
    for line in reversed(log.read_text().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise UsageError(f"{log} holds no JSON result line; see the log, then rerun")


@dataclass
class Job:
    """One command and the record it leaves: the job is done once ``record`` holds its
    command (a record of another command, from an earlier protocol, is redone)."""

    name: str
    record: Path
    command: list[str]
    kind: str  # "train" or "evaluate"
    needs: list[Path] = field(default_factory=list)  # files that must exist before it runs
    trained_by: Path | None = None  # an evaluation: the record of the training it evaluates

    @property
    def done(self) -> bool:
        """The record holds this command and, for an evaluation, was made of the checkpoint
        of the training record there is now (a training redone makes its evaluations stale)."""
        record = read_json(self.record)
        if record.get("command") != command_line(self.command):
            return False
        return self.trained_by is None or record.get("trained") == self.training_date()

    def training_date(self) -> str | None:
        return read_json(self.trained_by).get("date") if self.trained_by else None


def read_json(path: Path) -> dict[str, Any]:
    """A record, or {} where there is none (or only a part of one)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def command_line(command: list[str]) -> str:
    return f"python3 {shlex.join(command)}"


def checkpoints(dataset: str) -> list[int]:
    """The epochs whose checkpoints are kept (every --save-freq, the last included)."""
    flags = PROTOCOL[dataset]["train"]
    epochs = int(flags[flags.index("--num-epochs") + 1])
    every = int(flags[flags.index("--save-freq") + 1])
    return list(range(every, epochs + 1, every))


def train_job(
    dataset: str, method: str, flags: list[str], seed: int, out: Path, record: Path
) -> Job:
    name = f"{dataset}-{method}-seed{seed}"
    command = ["invariance_by_gradient.py", *PROTOCOL[dataset]["train"], *flags]
    command += ["--seed", str(seed), "--device", "cpu", "--checkpoint-dir", shown(out)]
    command += ["--filename", name, "--resume", "auto"]
    return Job(name, record / dataset / f"{name}.train.json", command, "train")


def evaluate_job(
    dataset: str, run: str, epoch: int | None, seed: int, out: Path, record: Path,
    suite: bool = False,
) -> Job:  # fmt: skip
    """The evaluation of run ``run``'s checkpoint after ``epoch`` epochs; ``epoch`` None: the
    random-initialisation encoder of ``seed`` (read from ``run``'s checkpoint for its network)."""
    checkpoint = out / f"{run}_epoch{epoch or checkpoints(dataset)[-1]:03d}.pth"
    name = f"{run}-epoch{epoch:03d}" if epoch else f"{dataset}-random-seed{seed}"
    command = [PROTOCOL[dataset]["script"], "--load-from", shown(checkpoint), "--device", "cpu"]
    command += ["--seed", str(seed), *PROBE, *PROTOCOL[dataset]["evaluate"]]
    command += ["--suite"] if suite else VARIANCE
    command += [] if epoch else ["--random-init"]
    trained_by = record / dataset / f"{run}.train.json"
    path = record / dataset / f"{name}.json"
    return Job(name, path, command, "evaluate", [checkpoint], trained_by)


def plan(datasets: list[str], seeds: list[int], out: Path, record: Path) -> list[Job]:
    """Every job of the study, in the order they run."""
    jobs = []
    for dataset in datasets:
        spec = PROTOCOL[dataset]
        last = checkpoints(dataset)[-1]
        for seed in seeds:
            suite_seed = seed in SUITE_SEEDS
            for method, flags in spec["methods"].items():
                jobs.append(train_job(dataset, method, flags, seed, out, record))
                run = f"{dataset}-{method}-seed{seed}"
                for epoch in checkpoints(dataset):
                    suite = suite_seed and epoch == last and method in SUITE_METHODS
                    jobs.append(evaluate_job(dataset, run, epoch, seed, out, record, suite))
            simclr = f"{dataset}-simclr-seed{seed}"
            jobs.append(evaluate_job(dataset, simclr, None, seed, out, record, suite_seed))
        if SWEEP_SEED in seeds:
            for method, flags in spec["sweep"].items():
                jobs.append(train_job(dataset, method, flags, SWEEP_SEED, out, record))
                run = f"{dataset}-{method}-seed{SWEEP_SEED}"
                for epoch in checkpoints(dataset):
                    jobs.append(evaluate_job(dataset, run, epoch, SWEEP_SEED, out, record))
        for method, flags in spec["ablations"].items():
            for seed in seeds:
                jobs.append(train_job(dataset, method, flags, seed, out, record))
                run = f"{dataset}-{method}-seed{seed}"
                for epoch in checkpoints(dataset):
                    jobs.append(evaluate_job(dataset, run, epoch, seed, out, record))
    return jobs


def git_commit() -> str | None:
    """The commit that ran, marked "+changes" when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                             capture_output=True, text=True)  # fmt: skip
    commit = head.stdout.strip()
    return f"{commit}+changes" if commit and changed.stdout.strip() else commit or None


def execute(job: Job, out: Path) -> dict[str, Any]:
    """Run ``job`` (its output in ``out/<name>.log``) and write its record."""
    missing = [p for p in job.needs if not p.is_file()]
    if missing:
        raise UsageError(
            f"{missing[0]} is missing for {job.name}: its training run left no such checkpoint; "
            "delete that run's .train.json record to train it again"
        )
    log = out / f"{job.name}.log"
    load = os.getloadavg()[0]
    seconds = run(job.command, log)
    record: dict[str, Any] = {"command": command_line(job.command)}
    if job.trained_by is not None:
        record["trained"] = job.training_date()
    if job.kind == "train":
        name = job.command[job.command.index("--filename") + 1]
        epochs = read_metrics(out / f"{name}.metrics.jsonl")
        record |= {"epochs": epochs, "train_time_s": epochs[-1]["wall_s"]}
    else:
        record |= {"result": last_json(log)}
        record["result"].pop("checkpoint", None)  # a path on the machine that ran it
    record |= {
        "wall_s": round(seconds, 1),
        # Two cores: another job beside this one halves its speed. Times measured with a load
        # average well above the cores' number are not costs.
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "machine": machine(),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    job.record.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.record.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(job.record)  # a record is whole or absent: a killed job reruns
    return record


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", choices=list(PROTOCOL), default=list(PROTOCOL),
                   help="halves to run (default: both, Spirograph first)")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=seed_value, default=list(SEEDS),
                   help="seeds (default: 0 1 2 3 4)")  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "results",
                   help="checkpoints and logs (default: results/)")  # fmt: skip
    p.add_argument("--record", type=Path, default=REPO / "docs" / "results",
                   help="the records (default: docs/results/)")  # fmt: skip
    p.add_argument("--plan", action="store_true", help="list the jobs and whether each is done")
    return p


def main(args: argparse.Namespace) -> list[Job]:
    if shown(args.out).startswith("/") and not shown(args.record).startswith("/"):
        # The records' commands name the checkpoints through --out; one outside the repository
        # would make the repository's records hold commands no other clone can match.
        raise UsageError(
            f"--out {args.out} is outside the repository, where --record is; give a folder "
            "inside it (or --record elsewhere too)"
        )
    jobs = plan(args.datasets, args.seeds, args.out, args.record)
    todo = [job for job in jobs if not job.done]
    if args.plan:
        for job in jobs:
            print(f"{'done' if job.done else 'todo'}  {job.name}  ({job.kind})")
        print(f"{len(jobs) - len(todo)} of {len(jobs)} jobs done")
        return todo
    args.out.mkdir(parents=True, exist_ok=True)
    for number, job in enumerate(todo, start=1):
        print(f"[{number}/{len(todo)}] {job.name}: python3 {shlex.join(job.command)}", flush=True)
        record = execute(job, args.out)
        print(f"  wrote {shown(job.record)} in {record['wall_s'] / 60:.1f} min", flush=True)
    return todo


if __name__ == "__main__":
    run_cli(main, get_args_parser())
