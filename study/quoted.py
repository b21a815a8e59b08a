"""The numbers docs/invariance.md quotes beyond the tables and the protocol's lines, each printed
by `python3 -m study report` into docs/results.md so that no sentence rests on a number worked
out by hand: ratios of InvCLR to SimCLR with their intervals, how the fall of the trace of the
covariance splits between bunching and the rest, how closely the authors' computation follows the
spread across images, the estimator against its trace, the nuisance readout per parameter, which
seed carries a line's spread, the sweep's epochs at the limit and the hours a seed costs.

All of it is exploratory: 95% intervals, uncorrected, over the first study's seeds and methods
(what the page reads now) and, where more have records (new seeds, the relative penalty), over
every seed and method beside them.

The records' ``ratio`` is the trace of the covariance under θ over the spread across images (the
conditional variance is a random-projection estimate of that trace), so it is printed as
"trace / across" everywhere, and it is the trace's ratio, not the estimate's, that splits exactly
into the spread's and the ratio's."""

from __future__ import annotations

import math
import statistics

from study.claims import authors, score, variance
from study.half import Half
from study.protocol import SWEEP_SEED, described
from study.stats import ALPHA, Paired, fmt, paired, seeds
from study.tables import held

TRAINED = ("simclr", "invclr", "gp4", "nolimit", "relative")  # the study's methods, not the sweep


def log_ratio(half: Half, a: str, b: str, field: str, kind: str = "theta") -> tuple[Paired, str]:
    """``a``'s ``field`` (of the variance under ``kind``) over ``b``'s as a geometric-mean ratio
    with its 95% interval, and on how many seeds it is lower and higher."""
    d = paired(half.results(a), half.results(b), lambda r: math.log(variance(kind, field)(r)))
    low, high = d.interval(1 - ALPHA)
    lower, higher = sum(x < 0 for x in d.differences), sum(x > 0 for x in d.differences)
    interval = "" if d.n < 2 else f" [{math.exp(low):.3g}, {math.exp(high):.3g}]"
    text = (f"×{math.exp(d.mean):.3g}{interval}, lower on {lower} and higher on {higher} of "
            f"{seeds(d.n)}")  # fmt: skip
    return d, text


WORDS = {"conditional_variance": "conditional variance", "trace": "trace",
         "across": "across images", "ratio": "ratio (trace / across)"}  # fmt: skip


def ratios(half: Half, a: str, b: str, split: bool = True) -> list[str]:
    """``a`` against ``b`` on the conditional variance, the spread across images and their ratio
    (geometric-mean ratios, and the plain difference of the ratio), under θ and, where the
    dataset has it, the whole distortion; and the share of the log of the trace's ratio under θ
    that the spread accounts for (log trace = log across + log ratio, record by record)."""
    if not set(half.results(a)) & set(half.results(b)):
        return []
    la, lb = described(a).label, described(b).label
    lines, found = [], {}
    for kind in half.protocol.variances:
        where = "θ" if kind == "theta" else "whole distortion"
        for f, name in WORDS.items():
            found[kind, f], text = log_ratio(half, a, b, f, kind)
            lines.append(f"- {la} / {lb}, {name} {where}: {text}")
        d = found[kind, "ratio"]
        lines[-1] += (f" (a ratio of variances; its square root, in displacement: "
                      f"×{math.exp(d.mean / 2):.3g})")  # fmt: skip
    plain_d = paired(half.results(a), half.results(b), variance("theta", "ratio"))
    low, high = plain_d.interval(1 - ALPHA)
    lines.append(f"- {la} − {lb}, ratio (trace / across) θ: {fmt(plain_d.mean)} "
                 f"[{fmt(low)}, {fmt(high)}]")  # fmt: skip
    total = found["theta", "trace"].mean
    if split and total:
        share = found["theta", "across"].mean / total + 0.0  # + 0.0: no "-0%"
        lines.append(f"- {la} / {lb}: of the log of the trace's ratio θ, the spread across "
                     f"images accounts for {share:.0%} and the ratio (trace / across) for "
                     f"{1 - share:.0%}")  # fmt: skip
    return lines


def agreement(half: Half) -> list[str]:
    """How far the authors' computation is from the spread across images, and the paper's
    estimator from its trace, over every final checkpoint (the largest relative gap)."""
    groups = {"trained encoders": TRAINED, "random initialisations": ("random",)}
    lines = []
    for name, methods in groups.items():
        results = [r for m in methods for r in half.results(m).values()]
        if not results:
            continue
        gap = max(abs(authors(r) / variance("theta", "across")(r) - 1) for r in results)
        est = [variance("theta")(r) / variance("theta", "trace")(r) for r in results]
        lines.append(f"- {name} ({seeds(len(results)).replace('seed', 'final checkpoint')}): "
                     f"the authors' computation "
                     f"within {gap:.1%} of the spread across images; the conditional variance's "
                     f"estimate {min(est):.2f}–{max(est):.2f} of its trace")  # fmt: skip
    return lines


def nuisance_ranges(half: Half) -> list[str]:
    """The nuisance readout's MSE over its baseline, per parameter: each method's range over
    the seeds that have it."""
    lines = []
    for method in (*half.main_methods[:2], "random"):
        found = [r["nuisance"]["per_param"] for r in half.results(method).values()
                 if "per_param" in r.get("nuisance", {})]  # fmt: skip
        if not found:
            continue
        cells = []
        for name in found[0]:
            x = [p[name]["mse"] / p[name]["baseline_mse"] for p in found]
            cells.append(f"{name} {min(x):.2f}–{max(x):.2f}")
        lines.append(f"- nuisance MSE / baseline per parameter, {described(method).label} "
                     f"({seeds(len(found))}): " + ", ".join(cells))  # fmt: skip
    return lines


def largest_share(half: Half) -> list[str]:
    """Which seed carries most of the squared deviations of InvCLR − SimCLR, per measure."""
    lines = []
    for name, measure in (("conditional variance θ", variance("theta")), ("probe", score(half))):
        a, b = half.results("invclr"), half.results("simclr")
        common = sorted(set(a) & set(b))
        d = {s: measure(a[s]) - measure(b[s]) for s in common}
        mean = statistics.fmean(d.values()) if d else 0.0
        squares = {s: (x - mean) ** 2 for s, x in d.items()}
        if len(d) < 3 or not sum(squares.values()):  # with two seeds each carries half
            continue
        top = max(squares, key=squares.get)
        lines.append(f"- InvCLR − SimCLR, {name}: seed {top} carries "
                     f"{squares[top] / sum(squares.values()):.0%} of the squared deviations "
                     f"over {seeds(len(d))}")  # fmt: skip
    return lines


def at_the_limit(half: Half) -> list[str]:
    """The share of steps at which the penalty sat at the limit: each λ of the sweep (seed 0),
    epoch by epoch, and each seed's first epoch of the penalised methods, each with its limit
    (the run without the paper's limit has one no step reaches)."""
    lines = []
    for method in [m.name for m in half.protocol.role("sweep")]:
        t = half.trainings.get((method, SWEEP_SEED))
        if t is None:
            continue
        at = [f"epoch {e['epoch']} {held(e):.1%}" for e in t["epochs"] if held(e) > 0]
        lines.append(f"- {described(method).label}, seed {SWEEP_SEED}, steps at the limit: "
                     + (", ".join(at) or "none"))  # fmt: skip
    for method in ("invclr", "gp4", "nolimit"):
        runs = sorted((s, t) for (m, s), t in half.trainings.items() if m == method)
        if not runs:
            continue
        first = ", ".join(
            f"seed {s} {held(t['epochs'][0]):.1%} (penalty {t['epochs'][0]['penalty']:.3g})"
            for s, t in runs
        )
        later = sum(held(e) > 0 for _, t in runs for e in t["epochs"][1:])
        limit = runs[0][1]["epochs"][0].get("gp_upper_limit")
        limit = f" (limit {limit:g})".replace("e+0", "e") if limit is not None else ""
        lines.append(f"- {described(method).label}{limit}, first epoch at the limit (its mean "
                     f"penalty): {first}; later epochs at it: {later}")  # fmt: skip
    return lines


def hours_per_seed(half: Half) -> float | None:
    """What one more seed of SimCLR and InvCLR costs here in hours: the sum of each method's
    median training wall time over its records (None without both)."""
    cost = 0.0
    for method in ("simclr", "invclr"):
        trains = [t["train_time_s"] for (m, _), t in half.trainings.items() if m == method]
        if not trains:
            return None
        cost += statistics.median(trains)
    return cost / 3600


def quoted(halves: list[Half]) -> list[str]:
    lines = ["## Numbers docs/invariance.md quotes", "",
             "*Exploratory*: 95% intervals, uncorrected (study/quoted.py); over the first "
             "study's seeds and methods, and over every seed and method with records where "
             "there are more.",
             ""]  # fmt: skip
    for every in halves:
        first = every.first_study()
        blocks = [(first, "the first study's seeds and methods")]
        if len(every.evaluations) > len(first.evaluations):  # new seeds, or the relative penalty
            blocks.append((every, "every seed and method with records"))
        for half, which in blocks:
            lines += [f"### {half.dataset}, {which}", "", *numbers(half), ""]
    return lines


def numbers(half: Half) -> list[str]:
    """One dataset's numbers, over the seeds and methods ``half`` holds."""
    lines = ratios(half, "invclr", "simclr") + ratios(half, "gp4", "invclr", split=False)
    lines += ratios(half, "relative", "simclr") + agreement(half) + nuisance_ranges(half)
    lines += largest_share(half) + at_the_limit(half)
    hours = hours_per_seed(half)
    if hours is not None:
        lines.append(f"- one more seed of SimCLR and InvCLR, trained: {hours:.2f} h (each "
                     "method's median training wall time over its records)")  # fmt: skip
    return lines
