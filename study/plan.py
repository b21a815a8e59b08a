"""The study's jobs, in the order they run: each is one command of the project's own scripts
(a training run, or an evaluation of one saved checkpoint) and the record it leaves.

For each seed, the main methods are trained with a checkpoint every `save_freq` epochs and
every checkpoint gets the probe and the conditional variance (both computations); the final
checkpoints of the suite's seeds' SimCLR and InvCLR get the whole suite; the random-initialisation
encoder of each seed gets what the trained ones of that seed get. Then the λ sweep's runs (one
seed), then the ablations (every seed). Paired by seed, so that a stopped study is a smaller one,
not a lopsided one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.protocol import (
    PROBE,
    PROTOCOLS,
    SUITE_METHODS,
    SUITE_SEEDS,
    SWEEP_SEED,
    VARIANCE,
    Method,
)
from study.records import command_line, read_record, shown


@dataclass
class Job:
    """One command and the record it leaves. An evaluation names the training job whose
    checkpoint it reads (``training``), and that checkpoint (``needs``)."""

    name: str
    record: Path
    command: list[str]
    kind: str  # "train" or "evaluate"
    metric: str
    method: str
    seed: int
    epoch: int = 0  # an evaluation's checkpoint (0: the random-initialisation encoder)
    needs: list[Path] = field(default_factory=list)
    training: Job | None = None

    @property
    def dataset(self) -> str:
        return self.name.split("-")[0]

    def read(self) -> dict[str, Any] | None:
        """The job's record, None where there is none; `RecordError` for a damaged one."""
        return read_record(self.record, self.kind, self.metric)

    @property
    def done(self) -> bool:
        """The record holds this command and, for an evaluation, was made of the checkpoint of
        the training record there is now (a new training run makes its evaluations stale)."""
        record = self.read()
        if record is None or record["command"] != command_line(self.command):
            return False
        return self.training is None or record["trained"] == self.training_date()

    def training_date(self) -> str | None:
        trained = self.training.read() if self.training else None
        return trained["date"] if trained else None


def train_job(dataset: str, method: Method, seed: int, out: Path, record: Path) -> Job:
    protocol = PROTOCOLS[dataset]
    name = f"{dataset}-{method.name}-seed{seed}"
    command = ["invariance_by_gradient.py", *protocol.train_flags, *method.flags]
    command += ["--seed", str(seed), "--device", "cpu", "--checkpoint-dir", shown(out)]
    command += ["--filename", name, "--resume", "auto"]
    path = record / dataset / f"{name}.train.json"
    return Job(name, path, command, "train", protocol.metric, method.name, seed)


def evaluate_job(
    training: Job, epoch: int | None, seed: int, out: Path, suite: bool = False
) -> Job:
    """The evaluation of ``training``'s checkpoint after ``epoch`` epochs; ``epoch`` None: the
    random-initialisation encoder of ``seed`` (read from that checkpoint for its network)."""
    dataset = training.dataset
    protocol, method = PROTOCOLS[dataset], training.method if epoch else "random"
    checkpoint = out / f"{training.name}_epoch{epoch or protocol.checkpoints[-1]:03d}.pth"
    name = f"{training.name}-epoch{epoch:03d}" if epoch else f"{dataset}-random-seed{seed}"
    command = [protocol.script, "--load-from", shown(checkpoint), "--device", "cpu"]
    command += ["--seed", str(seed), *PROBE, *protocol.evaluate]
    command += ["--suite"] if suite else VARIANCE
    command += [] if epoch else ["--random-init"]
    path = training.record.parent / f"{name}.json"
    return Job(name, path, command, "evaluate", protocol.metric, method, seed, epoch or 0,
               [checkpoint], training)  # fmt: skip


def plan(datasets: list[str], seeds: list[int], out: Path, record: Path) -> list[Job]:
    """Every job of the study over ``datasets`` and ``seeds``, in the order they run."""
    jobs = []

    def trained(method: Method, seed: int, suite: bool = False) -> Job:
        training = train_job(dataset, method, seed, out, record)
        jobs.append(training)
        for epoch in protocol.checkpoints:
            last = suite and epoch == protocol.checkpoints[-1] and method.name in SUITE_METHODS
            jobs.append(evaluate_job(training, epoch, seed, out, last))
        return training

    for dataset in datasets:
        protocol = PROTOCOLS[dataset]
        for seed in seeds:
            suite = seed in SUITE_SEEDS
            simclr = [trained(method, seed, suite) for method in protocol.role("main")][0]
            jobs.append(evaluate_job(simclr, None, seed, out, suite))
        if SWEEP_SEED in seeds:
            for method in protocol.role("sweep"):
                trained(method, SWEEP_SEED)
        for method in protocol.role("ablation"):
            for seed in seeds:
                trained(method, seed)
    return jobs
