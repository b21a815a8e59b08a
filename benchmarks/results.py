"""The small-compute answer to the paper's claims, from the study's records (benchmarks/study.py).

    python3 -m benchmarks.results                  # run the study's missing jobs, then the tables
    python3 -m benchmarks.results --table-only     # the tables from the records in docs/results/
    python3 -m benchmarks.results --figures        # the tables, and docs/figures/*.png redrawn

The tables come from the records alone: the README's section between the `<!-- results:start -->`
and `<!-- results:end -->` markers (one verdict per claim and dataset) and docs/results.md (every
seed's numbers, the cheap penalty, the λ sweep, InvCLR − SimCLR against training length, and
InvCLR without its upper limit). A record counts only when it holds the command the study's plan
gives its job, so a table never mixes protocols. `--table-only` from a clone rewrites both files
byte for byte; figures are a separate option, since PNG bytes follow the matplotlib version.

A verdict is the paired difference InvCLR − SimCLR over seeds, with its standard error and a
Student t interval. Claims 1 and 2 are primary: their p-values are Holm-corrected over the
dataset's primary lines and each interval is at the level its Holm step tests (for three lines
98.3%, 97.5%, 95%). The other claims are secondary: 95%, uncorrected, and say so.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from benchmarks import study
from utils.cli import UsageError, run_cli

START, END = "<!-- results:start -->", "<!-- results:end -->"
ALPHA = 0.05
TRACKS = 1.5  # claim 7: how near two ratios must be for one to track the other
NAME = re.compile(r"^[a-z0-9]+-(?P<method>.+?)-seed(?P<seed>\d+)(-epoch(?P<epoch>\d+))?$")
LABELS = {
    "simclr": "SimCLR",
    "invclr": "InvCLR",
    "gp4": "InvCLR, --gp-every 4",
    "nolimit": "InvCLR, no upper limit",
    "random": "random initialisation",
}
Result = dict[str, Any]
WHAT = {"theta": "θ only", "distortion": "the whole distortion"}  # what each variance redraws


@dataclass
class Half:
    """One dataset's records: evaluation results by (method, seed, epoch) (epoch 0: the random
    encoder), training records by (method, seed), and how many planned jobs have none."""

    dataset: str
    evaluations: dict[tuple[str, int, int], Result]
    trainings: dict[tuple[str, int], Result]
    missing: int

    @property
    def final(self) -> int:
        return study.checkpoints(self.dataset)[-1]

    @property
    def lower_is_better(self) -> bool:
        return study.PROTOCOL[self.dataset]["metric"] == "mse"

    @property
    def pairs(self) -> int:
        """How many seeds have both SimCLR's and InvCLR's final checkpoint evaluated: a half
        without one has no verdict yet."""
        return len(set(self.results("simclr")) & set(self.results("invclr")))

    def results(self, method: str, epoch: int | None = None) -> dict[int, Result]:
        """Seed -> result of ``method``'s checkpoint after ``epoch`` epochs (default: the last)."""
        epoch = 0 if method == "random" else (epoch or self.final)
        return {s: r for (m, s, e), r in self.evaluations.items() if (m, e) == (method, epoch)}


def read_half(dataset: str, record: Path, out: Path) -> Half:
    """The records of the study's plan for ``dataset`` that hold their job's command."""
    evaluations, trainings, missing = {}, {}, 0
    for job in study.plan([dataset], list(study.SEEDS), out, record):
        if not job.done:
            missing += 1
            continue
        content = json.loads(job.record.read_text())
        match = NAME.match(job.name)
        method, seed = match["method"], int(match["seed"])
        if job.kind == "train":
            trainings[(method, seed)] = content
        else:
            evaluations[(method, seed, int(match["epoch"] or 0))] = content["result"]
    return Half(dataset, evaluations, trainings, missing)


# The measures, each a function of one evaluation result.
def score(half: Half) -> Callable[[Result], float]:
    return lambda r: r[study.PROTOCOL[half.dataset]["metric"]]


def variance(kind: str, field: str = "conditional_variance") -> Callable[[Result], float]:
    return lambda r: r["conditional_variance"][kind][field]


def authors(r: Result) -> float:
    return r["authors_variance"]["trace"]


def averaging_gain(half: Half) -> Callable[[Result], float]:
    """How much the mean of the most augmented copies improves on one copy (all images)."""

    def gain(r: Result) -> float:
        points = sorted(
            (p for p in r["averaging_curve"]["points"] if p["images"] == "all"),
            key=lambda p: p["passes"],
        )
        first, last = score(half)(points[0]), score(half)(points[-1])
        return first - last if half.lower_is_better else last - first

    return gain


def shift_drop(half: Half, kind: str) -> Callable[[Result], float]:
    """How much the score worsens from no shift to the largest shift of ``kind`` (the mean of
    both signs where the shift moves a mean either way)."""

    def drop(r: Result) -> float:
        largest = max(abs(p["amount"]) for p in r[kind])
        unshifted = next(score(half)(p) for p in r[kind] if p["amount"] == 0)
        shifted = statistics.fmean(score(half)(p) for p in r[kind] if abs(p["amount"]) == largest)
        return shifted - unshifted if half.lower_is_better else unshifted - shifted

    return drop


def nuisance(r: Result) -> float:
    return r["nuisance"]["relative"]


def fewest_labels(half: Half) -> Callable[[Result], float]:
    return lambda r: score(half)(min(r["label_fractions"], key=lambda f: f["fraction"]))


@dataclass
class Claim:
    """A claim of the paper on one dataset: InvCLR's ``measure`` is ``better`` ("lower" or
    "higher") than SimCLR's, on every seed's final checkpoint or on the suite's seeds."""

    number: int
    text: str
    measure: Callable[[Result], float]
    better: str
    primary: bool
    digits: str = ".3g"


def claims(half: Half) -> list[Claim]:
    metric = "lower test MSE" if half.lower_is_better else "higher test accuracy (points)"
    better = "lower" if half.lower_is_better else "higher"
    kinds = ["theta"] + ([] if half.dataset == "spirograph" else ["distortion"])
    found = [
        *(
            Claim(
                1,
                f"lower conditional variance ({WHAT[k]})",
                variance(k),
                "lower",
                True,
            )
            for k in kinds
        ),
        Claim(2, f"a better linear probe ({metric})", score(half), better, True, ".4g"),
        Claim(
            3,
            "more gain from feature averaging (M = 10 copies against 1, every image)",
            averaging_gain(half),
            "higher",
            False,
            ".4g",
        ),
    ]
    kinds = {k for r in half.evaluations.values() for k in r if k.startswith("shift")}
    for kind in sorted(kinds):
        label = kind.removeprefix("shift").replace("_", " ").strip() or "colour jitter"
        found.append(
            Claim(
                4,
                f"more robust under a test-time shift ({label}: the drop at its largest amount)",
                shift_drop(half, kind),
                "lower",
                False,
                ".4g",
            )
        )
    found += [
        Claim(
            5,
            "less information about the nuisance (nuisance MSE / baseline)",
            nuisance,
            "higher",
            False,
        ),
        Claim(
            6,
            "better with fewer labels (the smallest label fraction)",
            fewest_labels(half),
            better,
            False,
            ".4g",
        ),
    ]
    return found


@dataclass
class Paired:
    """InvCLR − SimCLR over ``n`` seeds: mean, standard error, p of the paired t test."""

    mean: float
    se: float
    n: int
    p: float

    def interval(self, level: float) -> tuple[float, float]:
        if self.n < 2:
            return (math.nan, math.nan)
        half_width = stats.t.ppf(0.5 + level / 2, self.n - 1) * self.se
        return (self.mean - half_width, self.mean + half_width)


def paired(
    a: dict[int, Result], b: dict[int, Result], measure: Callable[[Result], float]
) -> Paired:
    """``measure`` of ``a`` minus that of ``b``, over the seeds both have that can be measured."""
    differences = []
    for seed in sorted(set(a) & set(b)):
        try:
            differences.append(measure(a[seed]) - measure(b[seed]))
        except (KeyError, IndexError, TypeError, StopIteration):
            continue  # a result without this measure (the suite's measures: seeds 0-2 only)
    n = len(differences)
    if n < 2:
        return Paired(differences[0] if differences else math.nan, math.nan, n, math.nan)
    mean, se = statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(n)
    # A difference without spread (quantised scores, identical runs) has no t statistic.
    p = math.nan if se == 0 else 2 * stats.t.sf(abs(mean / se), n - 1)
    return Paired(mean, se, n, p)


@dataclass
class Verdict:
    claim: Claim
    difference: Paired
    level: float  # of the interval shown
    p: float  # Holm-adjusted for the primary claims
    word: str


def verdicts(half: Half) -> list[Verdict]:
    """One verdict per claim: Holm over the primary ones, 95% for the rest."""
    found = []
    for claim in claims(half):
        difference = paired(half.results("invclr"), half.results("simclr"), claim.measure)
        found.append(Verdict(claim, difference, 1 - ALPHA, difference.p, ""))
    holm([v for v in found if v.claim.primary and not math.isnan(v.p)])
    for v in found:
        v.word = word(v.difference.mean, v.p, v.claim.better)
    return found


def holm(family: list[Verdict]) -> None:
    """Holm's step-down over ``family``: the k-th smallest p is tested at α / (m − k + 1) and
    only while every smaller one passed. Each p becomes its adjusted value, and each interval is
    shown at the level its step tested: a line after the first failed step at that step's
    level, so that an interval excludes 0 exactly when its line passes."""
    adjusted, failed = 0.0, None
    for rank, v in enumerate(sorted(family, key=lambda v: v.p)):
        tests = len(family) - rank
        adjusted = max(adjusted, min(1.0, tests * v.p))
        if failed is None and adjusted >= ALPHA:
            failed = tests
        v.p, v.level = adjusted, 1 - ALPHA / (failed or tests)


def word(mean: float, p: float, better: str) -> str:
    if math.isnan(p) or p >= ALPHA:
        return "cannot tell"
    return "supports" if (mean < 0) == (better == "lower") else "contradicts"


def fmt(value: float, digits: str = ".3g") -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+{digits}}"


def seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def plain(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2g}"


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


def against_exact(half: Half, method: str, name: str, base: str = "exact") -> list[str]:
    """``method`` against InvCLR (the exact penalty, the paper's settings; ``base`` names it) on
    claims 1 and 2, paired by seed, and how much of InvCLR − SimCLR it keeps."""
    lines = []
    for claim in [c for c in claims(half) if c.primary]:
        d = paired(half.results(method), half.results("invclr"), claim.measure)
        low, high = d.interval(1 - ALPHA)
        said = (
            "no difference detected (which does not make them equal)"
            if math.isnan(d.p) or d.p >= ALPHA
            else (f"lower with {name}" if d.mean < 0 else f"higher with {name}")
        )
        # How much of the exact penalty's effect the variant keeps, over the seeds all three have
        # (a variant still running has fewer seeds than InvCLR).
        common = set(half.results(method)) & set(half.results("invclr"))
        variant, exact = (
            paired(
                {s: r for s, r in half.results(m).items() if s in common},
                half.results("simclr"),
                claim.measure,
            )
            for m in (method, "invclr")
        )
        share = variant.mean / exact.mean if exact.mean else math.nan
        # The p beside the share: this line is uncorrected, where the verdict on InvCLR − SimCLR
        # above is Holm-corrected (a share can stand beside a "cannot tell" there).
        p = f"p = {exact.p:.3g}, uncorrected, on these seeds"
        if math.isnan(exact.p) or exact.p >= ALPHA:
            # A share of a difference the seeds do not tell from 0 is a ratio of noises.
            p = "" if math.isnan(exact.p) else f" ({p})"
            kept = f"; InvCLR − SimCLR is not told from 0{p}, so there is no share"
        else:
            kept = "" if math.isnan(share) else f"; it keeps {share:.0%} of InvCLR − SimCLR ({p})"
        lines.append(
            f"- {claim.text}: {name} − {base} {fmt(d.mean, claim.digits)} "
            f"[{fmt(low, claim.digits)}, {fmt(high, claim.digits)}] (95%, uncorrected, "
            f"{seeds(d.n)}): "
            f"{said}{kept}."
        )
    return lines


def cheap_penalty(half: Half) -> list[str]:
    """--gp-every 4 against the exact penalty on claims 1 and 2, and each method's cost."""
    lines = against_exact(half, "gp4", "gp-every 4")
    costs = epoch_seconds(half)
    if "simclr" in costs:
        lines.append(
            "- seconds per epoch (a run's lower quartile, the median over seeds; × its cost "
            "against the same seed's SimCLR run, the median over seeds): "
            + ", ".join(f"{LABELS[m]} {s:.1f} (×{r:.2f})" for m, (s, r) in costs.items())
            + "."
        )
    return lines


def upper_limit(half: Half) -> list[str]:
    """InvCLR with the paper's upper limit against InvCLR without one, paired by seed: how often
    the limit held the penalty (a clamped penalty has no gradient), the penalty each run ended
    with, and claims 1 and 2."""
    free = half.results("nolimit")
    if not free:
        return []
    clamped = half.results("invclr")
    limited = [t for (m, _), t in sorted(half.trainings.items()) if m == "invclr"]
    lines = [
        "| seed | epoch 1 at the limit (InvCLR) | penalty, last epoch: limit / none | "
        "cond. var. θ: limit / none | probe: limit / none |",
        "|---|---|---|---|---|",
    ]
    for seed in sorted(set(free) & set(clamped)):
        runs = [half.trainings.get((m, seed)) for m in ("invclr", "nolimit")]
        if None in runs:
            continue
        lines.append(
            f"| {seed} | {runs[0]['epochs'][0].get('clamp_fraction', math.nan):.0%} | "
            + " / ".join(f"{t['epochs'][-1]['penalty']:.3g}" for t in runs)
            + f" | {variance('theta')(clamped[seed]):.3g} / {variance('theta')(free[seed]):.3g}"
            + f" | {score(half)(clamped[seed]):.4g} / {score(half)(free[seed]):.4g} |"
        )
    if limited:
        later = sum((r.get("clamp_fraction") or 0) > 0 for t in limited for r in t["epochs"][1:])
        lines += [
            "",
            "Epoch 1 at the limit: the share of InvCLR's penalised steps in its first epoch at "
            f"which the penalty sat at the limit ({limited[0]['epochs'][0]['gp_upper_limit']:g}); "
            f"later epochs of any seed that reached it: {later}.",
        ]
    return [*lines, "", *against_exact(half, "nolimit", "no limit", "limit")]


def epoch_seconds(half: Half) -> dict[str, tuple[float, float]]:
    """Each method's seconds per epoch and its cost against SimCLR, over the seeds that have
    both runs. Per run the lower quartile of its epochs' times (other work on a 2-core machine
    only ever slows an epoch, and every epoch is the same work); the seconds are the median over
    those seeds, the ratio the median of each run's against its own seed's SimCLR run, trained
    beside it: a seed's runs share a session and so a machine, and the machines differ by more
    than the methods do."""
    quartile = {}
    for (method, seed), training in half.trainings.items():
        times = sorted(row["time_s"] for row in training["epochs"])
        if times and method in ("simclr", "invclr", "gp4"):
            quartile[method, seed] = times[(len(times) - 1) // 4]
    costs = {}
    for method in ("simclr", "invclr", "gp4"):
        runs = {seed: s for (m, seed), s in quartile.items()
                if m == method and ("simclr", seed) in quartile}  # fmt: skip
        if runs:
            ratios = [s / quartile["simclr", seed] for seed, s in runs.items()]
            costs[method] = (statistics.median(runs.values()), statistics.median(ratios))
    return costs


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
    if missing:
        lines.append(
            f"*{missing} of the study's jobs have no record yet: the numbers above are "
            "those of the seeds done (`python3 -m benchmarks.study --plan`).*"
        )
    return "\n".join(lines).rstrip() + "\n"


def per_seed_table(half: Half) -> list[str]:
    kinds = ["theta"] + ([] if half.dataset == "spirograph" else ["distortion"])
    head = (
        f"| encoder | seed | {study.PROTOCOL[half.dataset]['metric']} | "
        + " | ".join(f"cond. var. {k}" for k in kinds)
        + " | authors' trace | across images θ | probe converged | training wall time (min) |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for method in ("simclr", "invclr", "gp4", "random"):
        for seed, r in sorted(half.results(method).items()):
            train = half.trainings.get((method, seed))
            lines.append(
                f"| {LABELS[method]} | {seed} | {score(half)(r):.4g} | "
                + " | ".join(f"{variance(k)(r):.3g}" for k in kinds)
                + f" | {authors(r):.3g} | {variance('theta', 'across')(r):.3g} | "
                f"{'yes' if r['converged'] else 'NO'} | "
                + (f"{train['train_time_s'] / 60:.1f}" if train else "–")
                + " |"
            )
    return lines


def invariance_table(half: Half) -> list[str]:
    """The measures of invariance side by side (geometric mean over seeds, ×/÷ its spread), to
    show how much of each is the spread across images: the paper's conditional variance, that
    spread, their ratio, the authors' computation, and how well a linear probe reads the nuisance
    (the suite's seeds; 1 would be no better than predicting its mean)."""
    measures = {  # name -> (what it reads, the key a record needs for it)
        "cond. var. θ": (variance("theta"), "conditional_variance"),
        "across images θ": (variance("theta", "across"), "conditional_variance"),
        "cond. var. / across": (variance("theta", "ratio"), "conditional_variance"),
        "authors' trace": (authors, "authors_variance"),
        "nuisance MSE / baseline": (lambda r: r["nuisance"]["relative"], "nuisance"),
    }
    lines = ["| encoder | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|"]
    for method in ("simclr", "invclr", "gp4", "random"):
        results = half.results(method).values()
        if not results:
            continue
        cells = []
        for measure, key in measures.values():
            logs = [math.log(measure(r)) for r in results if key in r]
            if not logs:
                cells.append("–")
                continue
            spread = math.exp(statistics.stdev(logs)) if len(logs) > 1 else 1.0
            cells.append(f"{math.exp(statistics.fmean(logs)):.3g} (×/÷ {spread:.2f}, {len(logs)})")
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return lines


def sweep_table(half: Half) -> list[str]:
    """The conditional variance (θ) of seed 0 at every checkpoint, for each λ, both ways."""
    runs = {
        "0 (SimCLR)": "simclr",
        **{m.removeprefix("lambda"): m for m in study.PROTOCOL[half.dataset]["sweep"]},
        "1e-2 (InvCLR)": "invclr",
    }
    epochs = study.checkpoints(half.dataset)
    lines = [
        "| λ | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
        "|---" * (len(epochs) + 1) + "|",
    ]
    for label, method in sorted(runs.items(), key=lambda kv: float(kv[0].split()[0])):
        cells = []
        for epoch in epochs:
            r = half.evaluations.get((method, study.SWEEP_SEED, epoch))
            cells.append(f"{variance('theta')(r):.3g} / {authors(r):.3g}" if r else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def length_table(half: Half) -> list[str]:
    """InvCLR − SimCLR at each checkpoint: the probe's score and the conditional variance."""
    lines = [
        "| epochs | probe: InvCLR − SimCLR | cond. var. θ: InvCLR − SimCLR | seeds |",
        "|---|---|---|---|",
    ]
    for epoch in study.checkpoints(half.dataset):
        a, b = half.results("invclr", epoch), half.results("simclr", epoch)
        s, v = paired(a, b, score(half)), paired(a, b, variance("theta"))
        lines.append(
            f"| {epoch} | {fmt(s.mean, '.4g')} ± {plain(s.se)} | {fmt(v.mean)} ± {plain(v.se)} "
            f"| {s.n} |"
        )
    return lines


def against_random(half: Half) -> list[str]:
    random = half.results("random")
    lines = []
    for method in ("simclr", "invclr", "gp4"):
        d = paired(half.results(method), random, score(half))
        if d.n:
            better = [
                s
                for s in set(half.results(method)) & set(random)
                if (score(half)(half.results(method)[s]) < score(half)(random[s]))
                == half.lower_is_better
            ]
            lines.append(
                f"- {LABELS[method]} − random initialisation, {half.dataset} probe: "
                f"{fmt(d.mean, '.4g')} ± {plain(d.se)}; better in {len(better)} of "
                f"{seeds(d.n)}."
            )
    return lines


def machines(halves: list[Half]) -> str:
    seen = {
        (t["machine"]["cpu"], t["machine"]["cores"]) for h in halves for t in h.trainings.values()
    }
    return "; ".join(f"{cpu} ({cores} threads)" for cpu, cores in sorted(seen)) or "–"


def results_md(halves: list[Half]) -> str:
    lines = [
        "# The small-compute study: records, tables and verdicts",
        "",
        "Generated by `python3 -m benchmarks.results --table-only` from the records in "
        "`docs/results/<dataset>/` (one per job of `benchmarks/study.py`); do not edit.",
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
        if study.PROTOCOL[half.dataset]["sweep"]:
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
    readme.write_text(f"{head}{START}\n{text}{END}{tail}")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--table-only", action="store_true", help="run nothing; tables from records")
    p.add_argument("--figures", action="store_true", help="also redraw docs/figures/*.png")
    p.add_argument(
        "--out",
        type=Path,
        default=study.REPO / "results",
        help="the study's checkpoints and logs (default: results/)",
    )
    p.add_argument(
        "--record",
        type=Path,
        default=study.REPO / "docs" / "results",
        help="the records (default: docs/results/)",
    )
    p.add_argument(
        "--readme",
        type=Path,
        default=study.REPO / "README.md",
        help="the file whose results section is replaced",
    )
    p.add_argument(
        "--docs",
        type=Path,
        default=study.REPO / "docs",
        help="where results.md and figures/ go (default: docs/)",
    )
    return p


def main(args: argparse.Namespace) -> str:
    if not args.readme.is_file():  # before hours of runs, not after
        raise UsageError(f"--readme {args.readme} is not a file; give the README to update")
    if not args.table_only:
        study.main(
            study.get_args_parser().parse_args(
                ["--out", str(args.out), "--record", str(args.record)]
            )
        )
    every = [read_half(d, args.record, args.out) for d in study.PROTOCOL]
    halves = [h for h in every if h.evaluations]
    if not halves:
        raise UsageError(f"no study records in {args.record}; run python3 -m benchmarks.study")
    section = readme_section(halves, missing=sum(h.missing for h in every))
    write_section(args.readme, section)
    (args.docs / "results.md").write_text(results_md(halves))
    if args.figures:
        from benchmarks.figures import draw  # matplotlib: for the figures only

        for path in draw(halves, args.docs / "figures"):
            print(f"wrote {path}")
    print(section)
    return section


if __name__ == "__main__":
    run_cli(main, get_args_parser())
