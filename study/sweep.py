"""A sweep that chooses a new method's settings before the study runs it (`Sweep`): the relative
penalty's λ and limit (#37). Each setting is trained on the sweep's seed and its final checkpoint
evaluated as the study's are; the rule, fixed in the protocol before the first run, then picks
one. A run stopped by training itself (the spread under its floor, a non-finite loss) is a result
of the sweep, recorded with the line that stopped it, not a failure of the sweep.

    python3 -m study sweep      # run what is missing, then write docs/relative-sweep.md
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from study.plan import Job, evaluate_job, train_job
from study.protocol import PROTOCOLS, Method, Sweep
from study.records import RecordError, command_line, holds, machine, now, shown, write_record
from study.runner import elsewhere, execute
from utils.checkpoint import ensure_writable, write_text
from utils.cli import UsageError
from utils.metrics import read_metrics

# The lines with which training stops a run on its own: outcomes of a setting.
STOPS = ("the batch's spread fell", "the loss became NaN or infinite")
ROW = ("epoch", "penalty", "loss", "clamp_fraction", "spread")


def sweep_jobs(sweep: Sweep, out: Path, record: Path) -> list[Job]:
    """Each setting's training and the evaluation of its final checkpoint, in the order they
    run. A training record need hold no epoch (a run stopped in its first); `summary` checks the
    rows it reads."""
    protocol = PROTOCOLS[sweep.dataset]
    jobs = []
    for method in sweep.methods:
        training = train_job(sweep.dataset, method, sweep.seed, out, record)
        training.fields = ("command:str", "machine:dict", "date:str", "epochs:list")
        evaluation = evaluate_job(training, protocol.checkpoints[-1], sweep.seed, out)
        score = f"result.validation_{protocol.metric}:num"
        jobs += [training, dataclasses.replace(evaluation, fields=(*evaluation.fields, score))]
    return jobs


def stopped(job: Job) -> str | None:
    """The line that stopped ``job``'s training run, None where it ran to the end (or has no
    record)."""
    record = job.read()
    return record.get("stopped") if record else None


def run_sweep(jobs: list[Job], out: Path, retrain_anywhere: bool = False) -> None:
    """Run every job of ``jobs`` not done, in order; a run that training stops is recorded as
    stopped (its evaluation is then not run), any other failure stops the sweep. A job whose run
    must be retrained on another kind of machine is deferred unless ``retrain_anywhere``."""
    ensure_writable(out, "--out")
    for number, job in enumerate(jobs, start=1):
        if job.done or (job.training is not None and stopped(job.training)):
            continue
        if not retrain_anywhere and (kind := elsewhere(job)) is not None:  # see study/runner.py
            print(f"deferred: {job.name}: its run was recorded on {kind}; run the sweep there, "
                  "or give --retrain-anywhere to make it a new run here", flush=True)  # fmt: skip
            continue
        print(f"[{number}/{len(jobs)}] {job.name}: {command_line(job.command)}", flush=True)
        try:
            execute(job, out)
        except UsageError:
            log = out / f"{job.name}.log"
            lines = log.read_text().splitlines() if log.is_file() else []
            said = next((line for line in reversed(lines) if line.strip()), "")
            if job.kind != "train" or not any(stop in said for stop in STOPS):
                raise
            metrics = out / f"{job.name}.metrics.jsonl"
            epochs = read_metrics(metrics) if metrics.is_file() else []
            record = {"command": command_line(job.command), "stopped": said, "epochs": epochs}
            write_record(job.record, record | {"machine": machine(), "date": now()})
            print(f"  stopped by training: {said}", flush=True)


def summary(sweep: Sweep, jobs: list[Job]) -> list[dict[str, Any]]:
    """One row per setting: what training and the evaluation recorded, and whether the rule may
    choose it. The rule reads ``eligible`` and ``validation`` alone."""
    protocol = PROTOCOLS[sweep.dataset]
    rows = []
    pairs = zip(jobs[::2], jobs[1::2], strict=True)
    for method, (training, evaluation) in zip(sweep.methods, pairs, strict=True):
        trained = training.read() if training.done else None
        result = evaluation.read()["result"] if evaluation.done else None
        row: dict[str, Any] = {"method": method, "done": trained is not None}
        if trained is not None:
            epochs = trained["epochs"]
            for epoch in epochs:
                bad = [key for key in ROW if not holds(epoch, f"{key}:num")]
                if bad:
                    raise RecordError(
                        f"{shown(training.record)}: an epoch lacks {', '.join(bad)}; restore "
                        "the record or delete it to run its job again"
                    )
            complete = len(epochs) == protocol.epochs and not trained.get("stopped")
            clamped = sum(e["clamp_fraction"] for e in epochs) / max(len(epochs), 1)
            row |= {
                "stopped": trained.get("stopped"),
                "epochs": len(epochs),
                "clamped": clamped,  # each epoch has the same number of penalised steps
                "penalty": epochs[-1]["penalty"] if epochs else None,
                "spread": epochs[-1]["spread"] if epochs else None,
                "eligible": complete and clamped <= 0.5 and result is not None,
            }
        if result is not None:
            row["result"] = result  # for the table the rule does not read
            row["validation"] = result[f"validation_{protocol.metric}"]
            row["converged"] = result["converged"] and result["reg_search_converged"]
            row["eligible"] = row.get("eligible", False) and row["converged"]
        rows.append(row)
    return rows


def finished(rows: list[dict[str, Any]]) -> bool:
    """Every setting trained, and evaluated or stopped."""
    return all(row["done"] and ("validation" in row or row["stopped"]) for row in rows)


def choose(rows: list[dict[str, Any]], lower_is_better: bool) -> dict[str, Any] | None:
    """The rule: the best held-out score among the eligible settings; None where the sweep is
    not finished or none is eligible."""
    if not finished(rows):
        return None
    eligible = [row for row in rows if row.get("eligible")]
    sign = 1 if lower_is_better else -1
    return min(eligible, key=lambda row: sign * row["validation"], default=None)


def chosen(sweep: Sweep, out: Path, record: Path) -> Method | None:
    """The setting the rule chose, as the study's method ``sweep.name`` (role ``sweep.name``);
    None while the sweep is not finished or where no setting is eligible."""
    jobs = sweep_jobs(sweep, out, record)
    row = choose(summary(sweep, jobs), PROTOCOLS[sweep.dataset].lower_is_better)
    if row is None:
        return None
    return dataclasses.replace(row["method"], name=sweep.name, label=sweep.label,
                               colour=sweep.colour, role=sweep.name)  # fmt: skip


def write_sweep(sweep: Sweep, jobs: list[Job], path: Path) -> str:
    """The sweep's table, rule and choice as Markdown, written to ``path``; returns it."""
    protocol = PROTOCOLS[sweep.dataset]
    rows = summary(sweep, jobs)
    metric = "MSE" if protocol.metric == "mse" else "accuracy (%)"
    lines = [
        f"# The {sweep.name} sweep",
        "",
        f"Written by `python3 -m study sweep` from the records in docs/results/{sweep.dataset}/ "
        f"(`*-seed{sweep.seed}*`): {sweep.dataset}'s laptop settings ({protocol.epochs} epochs), "
        f"seed {sweep.seed}, which the study does not use.",
        "",
        f"**Rule** (fixed in study/protocol.py before the first run): {sweep.rule}",
        "",
        f"| setting | epochs | clamped | quotient, last epoch | spread, last epoch | "
        f"held-out {metric} | eligible |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row["done"]:
            lines.append(f"| {row['method'].label} | not run yet | | | | | |")
            continue
        fields = [
            row["method"].label,
            f"{row['epochs']}" + (" (stopped)" if row["stopped"] else ""),
            f"{row['clamped']:.1%}",
            "" if row["penalty"] is None else f"{row['penalty']:.4g}",
            "" if row["spread"] is None else f"{row['spread']:.4g}",
            f"{row['validation']:.5g}" if "validation" in row else "",
            "yes" if row.get("eligible") else "no",
        ]
        lines.append("| " + " | ".join(fields) + " |")
    stops = [row for row in rows if row["done"] and row["stopped"]]
    lines += [""] + [f"- {row['method'].label} stopped: {row['stopped']}" for row in stops]
    chosen = choose(rows, protocol.lower_is_better)
    if not finished(rows):
        lines.append("**Chosen**: not yet; the sweep is not finished.")
    elif chosen is None:
        lines.append("**Chosen**: none is eligible; the study runs without this method.")
    else:
        flags = " ".join(chosen["method"].flags)
        lines.append(f"**Chosen**: {chosen['method'].label} (`{flags}`).")
    measured = [row for row in rows if "result" in row and "conditional_variance" in row["result"]]
    if measured:
        lines += [
            "",
            "Recorded beside and read by no part of the rule (*exploratory*: the study tests "
            "them on its own seeds), the final checkpoint:",
            "",
            f"| setting | test {metric} | cond. var. θ | across images θ | "
            "ratio (trace / across) |",
            "|---|---|---|---|---|",
        ]
        for row in measured:
            r, theta = row["result"], row["result"]["conditional_variance"]["theta"]
            lines.append(
                f"| {row['method'].label} | {r[protocol.metric]:.4g} | "
                + " | ".join(f"{theta[k]:.3g}" for k in ("conditional_variance", "across", "ratio"))
                + " |"
            )
    text = "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"
    write_text(path, text)
    return text
