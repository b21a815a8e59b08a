"""The study's report: the README's section between the `<!-- results:start -->` and
`<!-- results:end -->` markers (one verdict per claim and dataset) and docs/results.md (every
table), from the records alone, so that a rerun rewrites both byte for byte."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from study.claims import TRACKS, Verdict, authors, variance, verdicts
from study.half import Half
from study.stats import fmt
from study.tables import (
    against_random,
    cheap_penalty,
    invariance_table,
    length_table,
    machines,
    per_seed_table,
    sweep_table,
    upper_limit,
)
from utils.checkpoint import write_text
from utils.cli import UsageError

START, END = "<!-- results:start -->", "<!-- results:end -->"


def verdict_row(half: Half, v: Verdict) -> str:
    low, high = v.difference.interval(v.level)
    d = v.claim.digits
    detail = f"{fmt(v.difference.mean, d)} [{fmt(low, d)}, {fmt(high, d)}]"
    said = (
        v.word
        if v.word != "cannot tell"
        else (
            f"cannot tell (resolution ±{(high - low) / 2:{d}})"
            if not math.isnan(low)
            else "cannot tell"
        )
    )
    kind = "primary" if v.claim.primary else "secondary"
    return (
        f"| {v.claim.number}. {v.claim.text} | {half.dataset} | {detail} | "
        f"{100 * v.level:.3g}% | {v.difference.n} | {kind} | {said} |"
    )


def authors_line(half: Half) -> str:
    """Claim 7: which of the paper's measure and the spread across images the authors'
    computation tracks, by the InvCLR/SimCLR ratio of each (geometric means over seeds, with
    their spread): the nearer on a log scale, if within a factor of `TRACKS`; else neither."""
    invclr, simclr = half.results("invclr"), half.results("simclr")
    seeds = sorted(set(invclr) & set(simclr))
    if not seeds:
        return f"| 7. what the authors' computation measures | {half.dataset} | – | | 0 | | – |"
    logs = {}
    for label, measure in (
        ("their computation", authors),
        ("the paper's definition", variance("theta", "trace")),
        ("the spread across images", variance("theta", "across")),
    ):
        logs[label] = [math.log(measure(invclr[s]) / measure(simclr[s])) for s in seeds]
    means = {k: statistics.fmean(v) for k, v in logs.items()}
    theirs = means.pop("their computation")
    nearest = min(means, key=lambda k: abs(means[k] - theirs))
    tracks = nearest if abs(means[nearest] - theirs) <= math.log(TRACKS) else "neither"
    text = ", ".join(
        f"{k} {math.exp(statistics.fmean(v)):.3g}"
        + (f" (×/÷ {math.exp(statistics.stdev(v)):.2g})" if len(v) > 1 else "")
        for k, v in logs.items()
    )
    return (
        f"| 7. what the authors' computation measures (InvCLR/SimCLR, trace: {text}) | "
        f"{half.dataset} | | | {len(seeds)} | secondary | tracks {tracks} |"
    )


HOW = [
    "Each claim of the paper is measured the way the paper measures it, on the final checkpoint "
    "of every seed (claims 1 and 2) or on the whole suite's seeds 0-2 (the others): the "
    "difference InvCLR − SimCLR of each seed's pair, their mean, standard error and a Student t "
    "interval. Claims 1 and 2 are primary: Holm's step-down over a dataset's primary lines "
    "(Spirograph 2: θ and the probe; CIFAR-10 3: θ, the whole distortion and the probe), each "
    "interval at the level its step tested, so that it excludes 0 exactly when the line passes. "
    "The rest are secondary, at 95% and uncorrected. *supports* and *contradicts* say which way "
    "a difference that passes goes; *cannot tell* gives the interval's half-width, the smallest "
    "difference this protocol could have detected (the paper's CIFAR-10 gain at full scale is "
    "0.3 points of accuracy). A difference without spread over seeds has no t statistic and is "
    "*cannot tell*. Claim 7 names the measure whose InvCLR/SimCLR ratio the authors' "
    "computation is nearer to on a log scale, if within a factor of 1.5. Training wall times "
    "include whatever else the machine ran (each record has the load average before and after); "
    "the seconds per epoch of the cheap-penalty lines use a run's lower-quartile epoch instead, "
    "and each cost ratio is taken within a seed, whose runs are trained one after another (the "
    "sessions' machines differ in speed by more than the methods do).",
]
VERDICT_HEAD = [
    "| claim (InvCLR against SimCLR) | dataset | InvCLR − SimCLR [interval] | level | seeds | "
    "kind | verdict |",
    "|---|---|---|---|---|---|---|",
]


def not_judged(halves: list[Half]) -> list[str]:
    return [
        f"*{h.dataset}: no seed has both its SimCLR and its InvCLR checkpoint evaluated yet, so "
        "no verdict.*"
        for h in halves
        if not h.pairs
    ]


def readme_section(halves: list[Half], missing: int) -> str:
    lines = list(VERDICT_HEAD)
    judged = [h for h in halves if h.pairs]
    for half in judged:
        found = verdicts(half)
        shifts = [v for v in found if v.claim.number == 4]
        for v in found:
            if v.claim.number != 4:
                lines.append(verdict_row(half, v))
            elif v is shifts[0]:  # the shifts in one row here; each in docs/results.md
                words = [s.word for s in shifts]
                summary = ", ".join(f"{w} ×{words.count(w)}" for w in dict.fromkeys(words))
                lines.append(
                    f"| 4. more robust under a test-time shift ({len(shifts)} of them) | "
                    f"{half.dataset} | | 95% | {v.difference.n} | secondary | {summary} |"
                )
        lines.append(authors_line(half))
    lines += ["", *(f"{line}\n" for line in not_judged(halves))]
    if judged:  # the README keeps its 300 lines: the cheap penalty's lines are in results.md
        lines += [
            "The cheap penalty (`--gp-every 4`) against the exact one, and each method's seconds "
            "per epoch: [docs/results.md](docs/results.md#the-cheap-penalty).",
            "",
        ]
    if missing:  # in the paragraph above, if any: the README keeps its 300 lines
        note = (f"*{missing} of the study's jobs have no record yet: the numbers above are "
                "those of the seeds done (`python3 -m study plan`).*")  # fmt: skip
        if lines[-1] == "":
            lines.pop()
        lines[-1] = f"{lines[-1]} {note}" if lines[-1] else note
    return "\n".join(lines).rstrip() + "\n"


def results_md(halves: list[Half]) -> str:
    lines = [
        "# The small-compute study: records, tables and verdicts",
        "",
        "Generated by `python3 -m study report` from the records in "
        "`docs/results/<dataset>/` (one per job of `study/plan.py`); do not edit.",
        "",
        f"Machines: {machines(halves)}.",
        "",
        "## How the verdicts are made",
        "",
        *HOW,
        "",
        "## Verdicts",
        "",
        *VERDICT_HEAD,
    ]
    for half in [h for h in halves if h.pairs]:
        lines += [verdict_row(half, v) for v in verdicts(half)] + [authors_line(half)]
    lines += ["", *not_judged(halves)] if not_judged(halves) else []
    for half in halves:
        walls = sum(t["train_time_s"] for t in half.trainings.values())  # resumes included
        lines += [
            "",
            f"## {half.dataset}",
            "",
            f"{len(half.trainings)} training runs ({walls / 3600:.1f} h of wall time in "
            f"training), {len(half.evaluations)} evaluations; {half.missing} jobs to go.",
            "",
            "### Every seed's final checkpoint",
            "",
            *per_seed_table(half),
            "",
            *against_random(half),
            "",
            "### Measures of invariance (geometric mean over seeds ×/÷ its spread, seeds)",
            "",
            *invariance_table(half),
            "",
            "### The cheap penalty",
            "",
            *cheap_penalty(half),
            "",
            "### InvCLR − SimCLR against training length (mean ± standard error)",
            "",
            *length_table(half),
        ]
        if half.protocol.role("sweep"):
            lines += [
                "",
                "### The λ sweep (seed 0): conditional variance θ, the paper's "
                "definition / the authors' computation",
                "",
                *sweep_table(half),
            ]
        limit = upper_limit(half)
        if limit:
            lines += ["", "### The upper limit: InvCLR with the paper's clamp and without one", ""]
            lines += limit
    return "\n".join(lines).rstrip() + "\n"


def write_section(readme: Path, text: str) -> None:
    content = readme.read_text()
    if START not in content or END not in content:
        raise UsageError(f"{readme} lacks the {START} and {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text(readme, f"{head}{START}\n{text}{END}{tail}")


def write_report(halves: list[Half], missing: int, readme: Path, docs: Path) -> str:
    """Both files, each whole or not at all; returns the README's section."""
    section, table = readme_section(halves, missing), results_md(halves)  # both before either
    write_section(readme, section)
    write_text(docs / "results.md", table)
    return section
