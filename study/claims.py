"""The paper's claims as one table, the measures they read from an evaluation result, and one
verdict per claim and dataset: InvCLR − SimCLR paired by seed, Holm over the primary lines,
95% and uncorrected for the others."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from study.half import Half, Result
from study.stats import ALPHA, Paired, holm, paired, word

Measure = Callable[[Result], float]
WHAT = {"theta": "θ only", "distortion": "the whole distortion"}  # what each variance redraws


def score(half: Half) -> Measure:
    return lambda r: r[half.protocol.metric]


def variance(kind: str, field: str = "conditional_variance") -> Measure:
    return lambda r: r["conditional_variance"][kind][field]


def authors(r: Result) -> float:
    return r["authors_variance"]["trace"]


def averaging_gain(half: Half) -> Measure:
    """How much the mean of the most augmented copies improves on one copy (all images)."""

    def gain(r: Result) -> float:
        points = sorted(
            (p for p in r["averaging_curve"]["points"] if p["images"] == "all"),
            key=lambda p: p["passes"],
        )
        first, last = score(half)(points[0]), score(half)(points[-1])
        return first - last if half.lower_is_better else last - first

    return gain


def shift_drop(half: Half, kind: str) -> Measure:
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


def fewest_labels(half: Half) -> Measure:
    return lambda r: score(half)(min(r["label_fractions"], key=lambda f: f["fraction"]))


def variances(half: Half) -> list[str]:
    return list(half.protocol.variances)


def shifts(half: Half) -> list[str]:
    """The test-time shifts the records hold (the suite's: one per kind of nuisance)."""
    return sorted({k for r in half.evaluations.values() for k in r if k.startswith("shift")})


def shift_label(kind: str) -> str:
    return kind.removeprefix("shift").replace("_", " ").strip() or "colour jitter"


@dataclass(frozen=True)
class Row:
    """A claim of the paper: its ``text`` (a template: {variant}, {probe}), the measure of one
    evaluation result for each variant, which way InvCLR's value should go ("lower", "higher",
    or "probe": the probe score's better way), and whether it is primary. ``variants`` lists the
    lines a dataset has (None: one line)."""

    number: int
    text: str
    measure: Callable[[Half, str | None], Measure]
    better: str
    primary: bool
    digits: str = ".3g"
    variants: Callable[[Half], list[str | None]] = lambda half: [None]


CLAIMS = (
    Row(1, "lower conditional variance ({variant})", lambda h, k: variance(k), "lower", True,
        variants=variances),
    Row(2, "a better linear probe ({probe})", lambda h, _: score(h), "probe", True, ".4g"),
    Row(3, "more gain from feature averaging (M = 10 copies against 1, every image)",
        lambda h, _: averaging_gain(h), "higher", False, ".4g"),
    Row(4, "more robust under a test-time shift ({variant}: the drop at its largest amount)",
        shift_drop, "lower", False, ".4g", shifts),
    Row(5, "less information about the nuisance (nuisance MSE / baseline)",
        lambda h, _: nuisance, "higher", False),
    Row(6, "better with fewer labels (the smallest label fraction)",
        lambda h, _: fewest_labels(h), "probe", False, ".4g"),
)  # fmt: skip
# Claim 7 is no difference but a question, answered by `report.authors_line`: which measure's
# InvCLR/SimCLR ratio the authors' computation tracks, if within a factor of TRACKS.
TRACKS = 1.5


@dataclass
class Claim:
    """One line of a claim on one dataset: InvCLR's ``measure`` is ``better`` than SimCLR's."""

    number: int
    text: str
    measure: Measure
    better: str
    primary: bool
    digits: str = ".3g"


def claims(half: Half) -> list[Claim]:
    probe = "lower test MSE" if half.lower_is_better else "higher test accuracy (points)"
    better = "lower" if half.lower_is_better else "higher"
    found = []
    for row in CLAIMS:
        for variant in row.variants(half):
            words = WHAT.get(variant) or (shift_label(variant) if variant else "")
            text = row.text.format(variant=words, probe=probe)
            way = better if row.better == "probe" else row.better
            found.append(Claim(row.number, text, row.measure(half, variant), way, row.primary,
                               row.digits))  # fmt: skip
    return found


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
