"""The statistics of the verdicts: paired differences over seeds with Student t intervals, and
Holm's step-down correction over a family of lines."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from scipy import stats

ALPHA = 0.05


@dataclass
class Paired:
    """One method minus another over ``n`` seeds: mean, standard error, p of the paired t test."""

    mean: float
    se: float
    n: int
    p: float

    def interval(self, level: float) -> tuple[float, float]:
        if self.n < 2:
            return (math.nan, math.nan)
        half_width = stats.t.ppf(0.5 + level / 2, self.n - 1) * self.se
        return (self.mean - half_width, self.mean + half_width)


def paired(a: dict[int, Any], b: dict[int, Any], measure: Callable[[Any], float]) -> Paired:
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


class Tested(Protocol):
    p: float
    level: float


def holm(family: list[Tested]) -> None:
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


def plain(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2g}"


def seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"
