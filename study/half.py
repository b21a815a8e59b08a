"""One dataset's records, as the tables and figures read them. A record counts only when it holds
the command the plan gives its job, so that a table never mixes protocols."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.plan import Job, study_plan
from study.protocol import PROTOCOLS, RELATIVE_SWEEP, SEEDS, Protocol
from study.sweep import chosen

Result = dict[str, Any]


@dataclass
class Half:
    """One dataset's records: evaluation results by (method, seed, epoch) (epoch 0: the random
    encoder), training records by (method, seed), and how many planned jobs have none."""

    dataset: str
    evaluations: dict[tuple[str, int, int], Result]
    trainings: dict[tuple[str, int], Result]
    missing: int
    # The evaluations beside the study's own, by (variant, method, seed): "averaged", "curve".
    beside: dict[tuple[str, str, int], Result] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)  # job name -> its record's commit
    added: list[str] = field(default_factory=list)  # the confirmatory protocol's jobs

    @property
    def added_missing(self) -> int:
        """How many of the confirmatory protocol's jobs have no record yet."""
        return sum(name not in self.commits for name in self.added)

    @property
    def protocol(self) -> Protocol:
        return PROTOCOLS[self.dataset]

    @property
    def final(self) -> int:
        return self.protocol.checkpoints[-1]

    @property
    def lower_is_better(self) -> bool:
        return self.protocol.lower_is_better

    @property
    def main_methods(self) -> list[str]:
        """The methods trained on every seed, SimCLR first (the protocol's "main" role)."""
        return [m.name for m in self.protocol.role("main")]

    @property
    def pairs(self) -> int:
        """How many seeds have both SimCLR's and InvCLR's final checkpoint evaluated: a half
        without one has no verdict yet."""
        return len(set(self.results("simclr")) & set(self.results("invclr")))

    def results(self, method: str, epoch: int | None = None) -> dict[int, Result]:
        """Seed -> result of ``method``'s checkpoint after ``epoch`` epochs (default: the last)."""
        epoch = 0 if method == "random" else (epoch or self.final)
        return {s: r for (m, s, e), r in self.evaluations.items() if (m, e) == (method, epoch)}

    def first_study(self) -> Half:
        """This half on the first study's seeds and methods alone: its exploratory tables stay
        its own as the confirmatory protocol's seeds and the relative penalty arrive."""
        methods = {m.name for m in self.protocol.methods} | {"random"}

        def own(by_key: dict) -> dict:  # keys (method, seed, ...)
            return {k: v for k, v in by_key.items() if k[1] in SEEDS and k[0] in methods}

        return dataclasses.replace(
            self,
            evaluations=own(self.evaluations),
            trainings=own(self.trainings),
            missing=self.missing - self.added_missing,  # the protocol's jobs are not its own
        )

    def beside_results(self, variant: str, method: str) -> dict[int, Result]:
        """Seed -> the ``variant`` evaluation of ``method``'s final checkpoint."""
        return {s: r for (v, m, s), r in self.beside.items() if (v, m) == (variant, method)}


def read_half(dataset: str, jobs: list[Job]) -> Half:
    """The records of ``jobs`` (the plan) for ``dataset`` that hold their job's command."""
    evaluations, trainings, beside, commits, missing = {}, {}, {}, {}, 0
    for job in jobs:
        if job.dataset != dataset:
            continue
        if not job.done:
            missing += 1
            continue
        content = job.read()
        commits[job.name] = content.get("commit") or ""
        if job.kind == "train":
            trainings[(job.method, job.seed)] = content
        elif job.variant:
            beside[(job.variant, job.method, job.seed)] = content["result"]
        else:
            evaluations[(job.method, job.seed, job.epoch)] = content["result"]
    return Half(dataset, evaluations, trainings, missing, beside, commits)


def read_halves(record: Path, out: Path) -> tuple[list[Half], int]:
    """Every dataset's half that has evaluations, and how many of the study's jobs have no
    record yet."""
    jobs = study_plan(list(PROTOCOLS), out, record, chosen(RELATIVE_SWEEP, out, record))
    every = [read_half(dataset, jobs) for dataset in PROTOCOLS]
    for half in every:
        half.added = [j.name for j in jobs if j.dataset == half.dataset and j.confirmatory]
    return [h for h in every if h.evaluations], sum(h.missing for h in every)
