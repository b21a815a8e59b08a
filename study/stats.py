"""The statistics of the verdicts: paired differences over seeds with Student t intervals,
Holm's step-down correction over a family of lines, the exact sign-flip p, and the difference a
line detects with a given power."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from scipy import optimize, stats

ALPHA = 0.05


@dataclass
class Paired:
    """One method minus another over ``n`` seeds: mean, standard error, p of the paired t test."""

    mean: float
    se: float
    n: int
    p: float
    differences: tuple[float, ...] = ()

    def interval(self, level: float) -> tuple[float, float]:
        if self.n < 2:
            return (math.nan, math.nan)
        half_width = stats.t.ppf(0.5 + level / 2, self.n - 1) * self.se
        return (self.mean - half_width, self.mean + half_width)


# What reading a measure from a result that lacks it raises (the suite's measures: seeds 0-2).
UNMEASURED = (KeyError, IndexError, TypeError, StopIteration)


def paired(
    a: dict[int, Any], b: dict[int, Any], measure: Callable[[Any], float], null: float = 0.0
) -> Paired:
    """``measure`` of ``a`` minus that of ``b``, over the seeds both have that can be measured;
    its p tests mean = ``null``."""
    differences = []
    for seed in sorted(set(a) & set(b)):
        try:
            differences.append(measure(a[seed]) - measure(b[seed]))
        except UNMEASURED:
            continue
    return paired_differences(differences, null)


def paired_differences(differences: list[float], null: float = 0.0) -> Paired:
    """The mean of ``differences``, its standard error and the two-sided p of the t test of
    mean = ``null``."""
    n, kept = len(differences), tuple(differences)
    if n < 2:
        return Paired(differences[0] if differences else math.nan, math.nan, n, math.nan, kept)
    mean, se = statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(n)
    # A difference without spread (quantised scores, identical runs) has no t statistic.
    p = math.nan if se == 0 else 2 * stats.t.sf(abs((mean - null) / se), n - 1)
    return Paired(mean, se, n, p, kept)


def sign_flip_p(differences: tuple[float, ...], null: float = 0.0) -> float:
    """The exact two-sided sign-flip p of mean = ``null``: the share of the 2^n patterns of
    signs on the differences from ``null`` whose mean is at least as far from 0 as the one
    observed. With n differences it is at least 2 / 2^n (0.0625 at n = 5)."""
    centred = [d - null for d in differences]
    if not centred:
        return math.nan
    observed = abs(sum(centred))
    slack = 1e-12 * max(sum(abs(d) for d in centred), 1e-300)  # float sums of equal means
    count = sum(
        abs(sum(s * d for s, d in zip(signs, centred, strict=True))) >= observed - slack
        for signs in itertools.product((1, -1), repeat=len(centred))
    )
    return count / 2 ** len(centred)


def power_of(shift: float, n: int, level: float) -> float:
    """The power of the two-sided paired t test at ``level`` over ``n`` seeds where the true
    difference is ``shift`` standard errors (the noncentral t)."""
    critical = stats.t.ppf(0.5 + level / 2, n - 1)
    far = stats.nct.cdf(-critical, n - 1, shift)  # the other tail: NaN where it underflows
    return float(stats.nct.sf(critical, n - 1, shift) + (0.0 if math.isnan(far) else far))


def detectable(se: float, n: int, level: float, power: float) -> float:
    """The difference the two-sided t test at ``level`` detects with ``power`` where the
    standard error over ``n`` seeds is ``se``: solved on the noncentral t, a little above the
    usual (t(1 − α/2) + t(power)) · SE (1.4 times the interval's half-width at 5 seeds and
    80%, where the half-width is the 50%-power point)."""
    if n < 2 or math.isnan(se):
        return math.nan
    guess = stats.t.ppf(0.5 + level / 2, n - 1) + stats.t.ppf(power, n - 1)
    shift = optimize.brentq(lambda k: power_of(k, n, level) - power, 0.0, 2 * guess + 2)
    return shift * se


def seeds_needed(sd: float, difference: float, level: float, power: float) -> int | None:
    """The fewest seeds at which a spread ``sd`` of the paired differences lets a two-sided t
    test at ``level`` detect ``difference`` with ``power``; None beyond 100,000."""

    def enough(n: int) -> bool:
        return detectable(sd / math.sqrt(n), n, level, power) <= abs(difference)

    high = 2
    while not enough(high):  # the detectable difference falls as the seeds grow
        if high > 100_000 or difference == 0:
            return None
        high *= 2
    low = max(high // 2, 1)  # enough(high), and not enough(low) unless low = 1
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def holm_steps(ps: list[float], alpha: float = ALPHA) -> tuple[list[float], list[float]]:
    """Holm's step-down over ``ps`` (a missing p counts as 1: the family keeps its size): the
    adjusted p of each line, and the level each line's interval is shown at, that of the step
    that tested it or, after the first failed step, that step's, so that an interval excludes 0
    exactly when its line passes."""
    order = sorted(range(len(ps)), key=lambda i: 1.0 if math.isnan(ps[i]) else ps[i])
    adjusted, levels = [math.nan] * len(ps), [math.nan] * len(ps)
    running, failed = 0.0, None
    for rank, i in enumerate(order):
        tests = len(ps) - rank
        p = 1.0 if math.isnan(ps[i]) else ps[i]
        running = max(running, min(1.0, tests * p))
        if failed is None and running >= alpha:
            failed = tests
        adjusted[i], levels[i] = running, 1 - alpha / (failed or tests)
    return adjusted, levels


class Tested(Protocol):
    p: float
    level: float


def holm(family: list[Tested]) -> None:
    """Holm's step-down over ``family``: the k-th smallest p is tested at α / (m − k + 1) and
    only while every smaller one passed. Each p becomes its adjusted value, and each interval is
    shown at the level its step tested: a line after the first failed step at that step's
    level, so that an interval excludes 0 exactly when its line passes."""
    adjusted, levels = holm_steps([v.p for v in family])
    for v, p, level in zip(family, adjusted, levels, strict=True):
        v.p, v.level = p, level


def word(mean: float, p: float, better: str) -> str:
    if math.isnan(p) or p >= ALPHA:
        return "cannot tell"
    return "supports" if (mean < 0) == (better == "lower") else "contradicts"


def fmt(value: float, digits: str = ".3g") -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+{digits}}"


def plain(value: float, digits: str = ".2g") -> str:
    return "–" if math.isnan(value) else f"{value:{digits}}"


def seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"
