"""The study's jobs, in the order they run: each is one command of the project's own scripts
(a training run, or an evaluation of one saved checkpoint), the record it leaves, and the fields
that record must hold.

For each seed, the main methods are trained with a checkpoint every `save_freq` epochs and
every checkpoint gets the probe and the conditional variance (both computations); the final
checkpoints of the suite's seeds' SimCLR and InvCLR get the whole suite; the random-initialisation
encoder of each seed gets what the trained ones of that seed get. Then the λ sweep's runs (one
seed), then the ablations (every seed). Paired by seed, so that a stopped study is a smaller one,
not a lopsided one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augmentation.spirograph import DATA_PARAMS
from datasets.sources import DATASETS
from evaluation.measures import shift_flags
from study.design import load
from study.protocol import (
    PROBE,
    PROTOCOLS,
    SEEDS,
    SUITE_METHODS,
    SUITE_SEEDS,
    SWEEP_SEED,
    VARIANCE,
    Method,
    Protocol,
)
from study.records import command_line, read_record, shown

EPOCH = ("epoch", "lr", "contrastive_loss", "penalty", "loss", "time_s")
VARIANCE_FIELDS = ("conditional_variance", "trace", "across", "ratio")


@dataclass
class Job:
    """One command, the record it leaves and the fields the tables read from that record. An
    evaluation names the training job whose checkpoint it reads (``training``), and that
    checkpoint."""

    name: str
    dataset: str
    method: str
    seed: int
    record: Path
    command: list[str]
    fields: tuple[str, ...]
    epoch: int = 0  # an evaluation's checkpoint (0: the random-initialisation encoder)
    checkpoint: Path | None = None
    training: Job | None = None
    variant: str = ""  # an evaluation beside the study's own: "averaged" or "curve"
    confirmatory: bool = False  # a job study/confirmatory.toml adds

    @property
    def kind(self) -> str:
        return "evaluate" if self.training else "train"

    def read(self) -> dict[str, Any] | None:
        """The job's record, None where there is none; `RecordError` for a damaged one."""
        return read_record(self.record, self.fields)

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


def train_fields(method: Method) -> tuple[str, ...]:
    fields = ["command:str", "train_time_s:num", "machine:dict", "date:str"]
    fields += [f"epochs.[].{key}:num" for key in EPOCH]
    if method.upper_limit:  # how often the limit held the penalty: the upper-limit table
        fields += ["epochs.[].gp_upper_limit:num", "epochs.[].clamp_fraction:num"]
    return tuple(fields)


def evaluation_fields(protocol: Protocol, command: list[str]) -> tuple[str, ...]:
    fields = ["command:str", "trained:str", "machine:dict", "date:str", "result.converged"]
    fields += [f"result.{protocol.metric}:num"]
    # The probe beside the study's evaluation (averaged features, the curve) measures no variance.
    if "--suite" in command or "--authors-variance" in command:
        fields += ["result.authors_variance.trace:num"]
    if "--suite" in command or "--conditional-variance" in command:
        fields += [f"result.conditional_variance.{kind}.{field}:num"
                   for kind in protocol.variances for field in VARIANCE_FIELDS]  # fmt: skip
    if "--componentwise" in command:  # each regression target's MSE
        fields += [f"result.mse_{name}:num" for name in DATA_PARAMS]
    if "--suite" in command:
        fields += ["result.averaging_curve.points.[].passes:num", "result.nuisance.relative:num"]
        fields += ["result.label_fractions.[].fraction:num"]
        fields += [f"result.{kind}.[].amount:num"
                   for kind in shift_flags(DATASETS[protocol.dataset])]  # fmt: skip
    return tuple(fields)


def train_job(dataset: str, method: Method, seed: int, out: Path, record: Path) -> Job:
    protocol = PROTOCOLS[dataset]
    name = f"{dataset}-{method.name}-seed{seed}"
    command = ["invariance_by_gradient.py", *protocol.train_flags, *method.flags]
    command += ["--seed", str(seed), "--device", "cpu", "--checkpoint-dir", shown(out)]
    command += ["--filename", name, "--resume", "auto"]
    path = record / dataset / f"{name}.train.json"
    return Job(name, dataset, method.name, seed, path, command, train_fields(method))


def evaluate_job(
    training: Job, epoch: int | None, seed: int, out: Path, suite: bool = False
) -> Job:
    """The evaluation of ``training``'s checkpoint after ``epoch`` epochs; ``epoch`` None: the
    random-initialisation encoder of ``seed`` (read from that checkpoint for its network)."""
    protocol = PROTOCOLS[training.dataset]
    checkpoint = out / f"{training.name}_epoch{epoch or protocol.checkpoints[-1]:03d}.pth"
    name = f"{training.name}-epoch{epoch:03d}" if epoch else f"{protocol.dataset}-random-seed{seed}"
    command = [protocol.script, "--load-from", shown(checkpoint), "--device", "cpu"]
    command += ["--seed", str(seed), *PROBE, *protocol.evaluate]
    command += ["--suite"] if suite else VARIANCE
    command += [] if epoch else ["--random-init"]
    method = training.method if epoch else "random"
    path = training.record.parent / f"{name}.json"
    fields = evaluation_fields(protocol, command)
    return Job(name, protocol.dataset, method, seed, path, command, fields, epoch or 0,
               checkpoint, training)  # fmt: skip


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
            for method in protocol.role("main"):
                training = trained(method, seed, suite)
                if method.name == "simclr":  # the random encoder: SimCLR's network, untrained
                    random = evaluate_job(training, None, seed, out, suite)
            jobs.append(random)
        if SWEEP_SEED in seeds:
            for method in protocol.role("sweep"):
                trained(method, SWEEP_SEED)
        for method in protocol.role("ablation"):
            for seed in seeds:
                trained(method, seed)
    return jobs


def beside_job(training: Job, variant: str, passes: int, seed: int, out: Path) -> Job:
    """An evaluation of ``training``'s final checkpoint beside the study's own: the probe on
    the mean of ``passes`` draws of every image ("averaged"), or the feature-averaging curve
    ("curve": M = 1, 5, 10 on every image, 30 and 100 on the seeded subset)."""
    protocol = PROTOCOLS[training.dataset]
    final = protocol.checkpoints[-1]
    study = evaluate_job(training, final, seed, out)
    command = study.command[: study.command.index(VARIANCE[0])]  # the probe's flags alone
    if variant == "averaged":
        name, fields = f"{study.name}-m{passes}", ("result.num_passes:num",)
        command += ["--num-passes", str(passes)]
    else:
        name, fields = f"{study.name}-curve", ("result.averaging_curve.points.[].passes:num",)
        command += ["--averaging-curve"]
    base = evaluation_fields(protocol, command)
    return Job(name, study.dataset, study.method, seed, study.record.with_name(f"{name}.json"),
               command, (*base, *fields), final, study.checkpoint, training, variant)  # fmt: skip


def confirmatory_plan(
    datasets: list[str],
    out: Path,
    record: Path,
    relative: Method | None = None,
    seeds: list[int] | None = None,
) -> list[Job]:
    """The jobs study/confirmatory.toml adds to the study's (which `plan` lists), in the order
    they run, seed by seed: on its new seeds the methods its lines compare, trained and
    evaluated as the study's are, and the random encoder; the relative penalty (``relative``,
    the sweep's choice; None: not run) with its final checkpoint evaluated; and the averaged
    probe or curve of each final checkpoint its lines read (on the suite's seeds the suite's
    record holds the curve). ``seeds``: only these."""
    designs = load()
    jobs = []
    for dataset in datasets:
        design, protocol = designs.get(dataset), PROTOCOLS[dataset]
        if design is None:
            continue
        for seed in [s for s in design.seeds if seeds is None or s in seeds]:
            lines = [line for line in design.lines() if seed in line.seeds]
            compared = {m for line in lines for m in (line.a, line.b)}
            methods = {m.name: m for m in protocol.methods} | {"relative": relative}
            for name in ("simclr", "invclr", "relative"):
                method = methods.get(name)
                if name not in compared or method is None:
                    continue
                training = train_job(dataset, method, seed, out, record)
                new = seed in design.new_seeds
                if new or name == "relative":
                    jobs.append(training)
                    kept = protocol.checkpoints[-1:] if name == "relative" else protocol.checkpoints
                    jobs += [evaluate_job(training, epoch, seed, out) for epoch in kept]
                if new and name == "simclr":
                    jobs.append(evaluate_job(training, None, seed, out))
                reads = {line.record for line in lines if name in (line.a, line.b)}
                if "averaged" in reads:
                    jobs.append(beside_job(training, "averaged", design.averaged_passes, seed, out))
                if "curve" in reads and seed not in SUITE_SEEDS:
                    jobs.append(beside_job(training, "curve", 0, seed, out))
    for job in jobs:
        job.confirmatory = True
    return jobs


def study_plan(
    datasets: list[str],
    out: Path,
    record: Path,
    relative: Method | None = None,
    seeds: list[int] | None = None,
) -> list[Job]:
    """The first study's jobs on its seeds and then the confirmatory protocol's, each job once;
    ``seeds``: only these."""
    first = plan(datasets, [s for s in SEEDS if seeds is None or s in seeds], out, record)
    names = {job.name for job in first}
    later = [j for j in confirmatory_plan(datasets, out, record, relative, seeds)
             if j.name not in names]  # fmt: skip
    return first + later
