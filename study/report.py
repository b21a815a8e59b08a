"""The study's report: the README's section between the `<!-- results:start -->` and
`<!-- results:end -->` markers (one verdict per claim and dataset) and docs/results.md (every
table), from the records alone, so that a rerun rewrites both byte for byte."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from scipy.stats import chi2

from study.claims import TRACKS, Verdict, authors, variance, verdicts
from study.confirm import (
    HEAD,
    before_protocol,
    judge,
    per_seed,
    protocol_commit,
    reading,
    row,
    said,
)
from study.design import PROTOCOL_FILE, Design, load
from study.half import Half
from study.protocol import described
from study.quoted import hours_per_seed, quoted
from study.stats import ALPHA, fmt, plain, seeds_needed
from study.tables import (
    against_random,
    cheap_penalty,
    invariance_table,
    length_table,
    machines,
    per_seed_table,
    sweep_final,
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
    text = (
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
        f"{100 * v.level:.3g}% | {v.difference.n} | {kind} | {text} |"
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
    "a difference that passes goes; *cannot tell* gives the interval's half-width: the difference "
    "such a test detects only half the time (with 80% power it detects one about 1.4 times "
    "larger; the paper's CIFAR-10 gain at full scale is 0.3 points of accuracy). A difference "
    "without spread over seeds has no t statistic and is *cannot tell*. Claim 7 names the "
    "measure whose InvCLR/SimCLR ratio the authors' computation is nearer to on a log scale, "
    "if within a factor of 1.5. Training wall times "
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


def protocol_status(halves: list[Half], commit: str | None) -> str:
    """The protocol's commit, how many of its jobs are done, and whether every record of a run
    it adds was made from that commit or a later one."""
    added = sum(len(h.added) for h in halves)
    to_go = sum(h.added_missing for h in halves)
    if commit is None:
        return (f"*{PROTOCOL_FILE.name} is not the file study/confirmatory.commit pins (its "
                "SHA-256 differs): a changed protocol is a new study, pinned again before the "
                "runs it decides.*")  # fmt: skip
    early = [name for h in halves for name in before_protocol(h, h.added, commit)]
    made = (
        "every record of a run it adds was made from that commit or a later one"
        if not early
        else f"{len(early)} records of runs it adds were not made from it or a later commit "
        "with a clean tree: " + ", ".join(early)
    )
    return (
        f"Protocol: `study/{PROTOCOL_FILE.name}` at commit {commit[:10]}; {added - to_go} of the "
        f"{added} jobs it adds are done, {to_go} to go ({made})."
    )


def relative_reading(half: Half, design: Design) -> str:
    family = design.family("relative")
    if family is None:
        return ""
    if not half.results("relative"):
        return (f"*The relative penalty ({half.dataset}): no record yet (its setting is the "
                "relative sweep's choice, docs/relative-sweep.md).*")  # fmt: skip
    outcomes = judge(half, design, family)
    means = reading(design, outcomes)
    short = [o for o in outcomes if not o.complete]
    if short:  # the decision table reads the protocol's seeds, all of them
        least = min(short, key=lambda o: o.difference.n)
        means = (f"*provisional ({least.difference.n} of {len(least.line.seeds)} seeds on its "
                 f"shortest line)*: {means}")  # fmt: skip
    return f"**The relative penalty ({half.dataset})**: {means}"


def confirmatory_readme(halves: list[Half]) -> list[str]:
    """The primary lines of each dataset, the relative family's reading and the count of each
    word in the secondary family."""
    found = load()
    lines = ["| claim | dataset | InvCLR − SimCLR [interval] | level | seeds | "
             "sign-flip p (uncorrected) | "
             "detectable (80%) | verdict |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    notes = []
    for half in [h for h in halves if h.pairs]:
        design = found.get(half.dataset)
        if design is None:
            continue
        for o in judge(half, design, design.family("primary")):
            low, high = o.interval
            lines.append(
                f"| {o.line.claim}. {o.line.text} | {half.dataset} | {fmt(o.difference.mean)} "
                f"[{fmt(low)}, {fmt(high)}] | {100 * o.level:.3g}% | {o.difference.n} | "
                f"{plain(o.sign_flip, '.3g')} | {plain(o.detectable, '.3g')} | "
                f"{said(o, with_detectable=False)} |"
            )
        secondary = judge(half, design, design.family("secondary"))
        words = [o.word if o.difference.n else "no seed yet" for o in secondary]
        counts = ", ".join(f"{w} ×{words.count(w)}" for w in dict.fromkeys(words))
        short = sum(not o.final for o in secondary)
        if short:
            counts += (", all provisional (a line is short of its seeds)" if short == len(secondary)
                       else f", {short} of them provisional (short of their seeds)")  # fmt: skip
        new = design.new_seeds
        # The verdicts above rest partly (or, without new seeds, almost wholly) on records made
        # before the protocol, whose seeds the first study had already read.
        old = [s for s in design.seeds if s not in new]
        reused = (f"the records of seeds {old[0]}-{old[-1]} predate the protocol"
                  + (f" (seeds {new[0]}-{new[-1]} alone: docs/results.md)" if new else
                     ", and only the runs it adds are new"))  # fmt: skip
        notes.append(f"- {half.dataset}: {reused}; its {len(words)} secondary lines (Holm): "
                     f"{counts}.")  # fmt: skip
        notes += [f"- {relative_reading(half, design)}"] if design.family("relative") else []
    return [
        *lines,
        "",
        *(n for n in notes if n),
        *(["", *not_judged(halves)] if not_judged(halves) else []),
    ]


# The paper's gain a line of ours is too small to see: the seeds it would take.
PAPER_GAINS = {"cifar10": ("2a", 0.3, "points of accuracy, its ResNet-50 at full scale")}


def seeds_for_the_paper(half: Half, outcomes: list) -> list[str]:
    """How many seeds the line of `PAPER_GAINS` would need to detect the paper's gain with 80%
    power at the spread observed, and over that spread's own 95% interval (chi-square)."""
    if half.dataset not in PAPER_GAINS:
        return []
    line, gain, what = PAPER_GAINS[half.dataset]
    o = next(o for o in outcomes if o.line.id == line)
    n = o.difference.n
    if n < 2 or math.isnan(o.difference.se):
        return []
    sd = o.difference.se * math.sqrt(n)
    low, high = (sd * math.sqrt((n - 1) / chi2.ppf(q, n - 1)) for q in (0.975, 0.025))

    def needed_at(spread: float, power: float) -> int | str:
        return seeds_needed(spread, gain, 1 - ALPHA, power) or "more than 100,000"

    needed = [needed_at(x, 0.80) for x in (sd, low, high)]
    half_power = needed_at(sd, 0.5)
    hours = hours_per_seed(half)
    cost = ""
    if hours and all(isinstance(n, int) for n in needed):
        cost = (f" At {hours:.2f} h of training a seed (each method's median training wall "
                f"time over its records): "
                f"{needed[0] * hours:.0f} h ({needed[1] * hours:.0f} to "
                f"{needed[2] * hours:.0f} h).")  # fmt: skip
    return [
        f"Seeds needed for line {line} to detect the paper's gain of {gain} ({what}) with 80% "
        f"power in a 95% t test (more at its Holm level), at the spread observed"
        f" (sd {sd:.3g} over {n} seeds): "
        f"{needed[0]} (with 50% power: {half_power}); over that spread's own 95% interval "
        f"[{low:.3g}, {high:.3g}], a factor of {high / low:.2g}: {needed[1]} to {needed[2]}.{cost}",
        "",
    ]


def confirmatory_results(halves: list[Half]) -> list[str]:
    """Every family of every dataset, the relative family's reading, and each primary line seed
    by seed."""
    found = load()
    lines = ["## The confirmatory study", "", protocol_status(halves, protocol_commit()), ""]
    any_design = next(iter(found.values()), None)
    if any_design is not None:
        lines += [any_design.about, ""]
        lines += [f"- *{w}*: {meaning}" for w, meaning in any_design.words.items()] + [""]
    lines += [*not_judged(halves), ""] if not_judged(halves) else []
    for half in [h for h in halves if h.pairs]:
        design = found.get(half.dataset)
        if design is None:
            continue
        for family in design.families:
            correction = "Holm" if family.correction == "holm" else "uncorrected"
            lines += [f"### {half.dataset}: {family.name} ({correction})", "", *HEAD]
            outcomes = judge(half, design, family)
            lines += [row(o) for o in outcomes] + [""]
            if family.name == "relative":
                lines += [relative_reading(half, design), ""]
            if family.name == "primary":
                lines += seeds_for_the_paper(half, outcomes)
                for o in outcomes:
                    labels = f"{described(o.line.a).label} − {described(o.line.b).label}"
                    lines += [f"{o.line.id}, seed by seed ({labels}):", "", *per_seed(half, o), ""]
    return lines


def readme_section(halves: list[Half], missing: int) -> str:
    lines = confirmatory_readme(halves) + [""]
    status = protocol_status(halves, protocol_commit())
    if missing:
        status += (f" *{missing} of the study's jobs have no record yet: the numbers above are "
                   "those of the seeds done (`python3 -m study plan`).*")  # fmt: skip
    lines += [status, ""]
    lines += [
        "Every family, line by line, with each primary line seed by seed, and the first "
        "study's verdicts (read after its data: exploratory): "
        "[docs/results.md](docs/results.md).",
    ]
    return "\n".join(lines).rstrip() + "\n"


def results_md(halves: list[Half]) -> str:
    # Over every record, before first_study narrows the halves (quoted picks its own blocks).
    confirmatory, numbers = confirmatory_results(halves), quoted(halves)
    trained_on = machines(halves)
    halves = [h.first_study() for h in halves]  # the rest is the first study's, on its seeds
    lines = [
        "# The small-compute study: records, tables and verdicts",
        "",
        "Generated by `python3 -m study report` from the records in "
        "`docs/results/<dataset>/` (one per job of `study/plan.py`); do not edit.",
        "",
        f"Machines: {trained_on}.",
        "",
        *confirmatory,
        "## The first study: how its verdicts were made",
        "",
        "*Exploratory*: its seeds 0-4 alone; its secondary lines are uncorrected and the reading "
        "of its verdicts was chosen after its data; the confirmatory study above decides.",
        "",
        *HOW,
        "",
        "## The first study's verdicts",
        "",
        *VERDICT_HEAD,
    ]
    for half in [h for h in halves if h.pairs]:
        lines += [verdict_row(half, v) for v in verdicts(half)] + [authors_line(half)]
    lines += ["", *not_judged(halves)] if not_judged(halves) else []
    lines += ["", *numbers]
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
                "",
                "Seed 0's final checkpoint at each λ:",
                "",
                *sweep_final(half),
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
