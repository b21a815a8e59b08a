"""The confirmatory verdicts: each family of study/confirmatory.toml on the records, its lines
tested as the protocol says (paired t, Holm over the family, the sign-flip p and the detectable
difference beside), the relative family's reading from the protocol's decision table, and
whether every record of a run the protocol adds was made after the protocol's commit."""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
from dataclasses import dataclass

from study.claims import Measure, authors, averaging_gain, fewest_labels, nuisance, shift_drop
from study.claims import variance as variance_of
from study.design import PROTOCOL_FILE, Design, Family, Line
from study.half import Half, Result
from study.records import REPO
from study.stats import (
    UNMEASURED,
    Paired,
    detectable,
    fmt,
    holm_steps,
    paired,
    plain,
    sign_flip_p,
)


def pick(result: Result, path: str) -> float:
    """The number at ``path`` in ``result``: dotted keys; ``key[k=v,...]`` is the row of the
    list at ``key`` whose fields k equal v (compared as text)."""
    value = result
    for part in re.findall(r"[^.\[]+(?:\[[^\]]*\])?", path):
        key, _, selector = part.partition("[")
        value = value[key]
        if selector:
            wanted = dict(pair.split("=") for pair in selector.rstrip("]").split(","))
            value = next(
                row for row in value if all(str(row.get(k)) == v for k, v in wanted.items())
            )
    return float(value)


def measure(line: Line, half: Half) -> Measure:
    if line.measure == "field":
        return lambda r: pick(r, line.field)
    if line.measure == "log":
        return lambda r: math.log(pick(r, line.field))
    if line.measure == "authors_over_definition":
        return lambda r: math.log(authors(r) / variance_of("theta", "trace")(r))
    return {
        "averaging_gain": lambda: averaging_gain(half),
        "shift_drop": lambda: shift_drop(half, line.variant),
        "nuisance": lambda: nuisance,
        "fewest_labels": lambda: fewest_labels(half),
    }[line.measure]()


def records(half: Half, line: Line, method: str) -> dict[int, Result]:
    """Seed -> the record ``line`` reads of ``method``, over the line's seeds."""
    if line.record == "averaged":
        found = half.beside_results("averaged", method)
    elif line.record == "curve":  # the suite's records hold the curve; others have their own
        found = {s: r for s, r in half.results(method).items() if "averaging_curve" in r}
        found |= half.beside_results("curve", method)
    else:
        found = half.results(method)
    return {s: found[s] for s in line.seeds if s in found}


@dataclass
class Outcome:
    """One line on the records: the difference, the null it is tested against (0, or the log
    of a check's margin), its p (Holm-adjusted in a Holm family), the level of its interval, the
    sign-flip p, the difference detectable with the protocol's power, and its word."""

    line: Line
    difference: Paired
    null: float
    p: float
    level: float
    sign_flip: float
    detectable: float
    word: str = ""
    # In a Holm family a line's level, and so its word, depends on every other line's p: while
    # any line of the family is short of its seeds, every line's word is provisional.
    family_complete: bool = True

    @property
    def interval(self) -> tuple[float, float]:
        return self.difference.interval(self.level)

    @property
    def complete(self) -> bool:
        """Whether every seed the line names is in: a word on fewer seeds is provisional."""
        return self.difference.n == len(self.line.seeds)

    @property
    def final(self) -> bool:
        """Whether the word is the protocol's: the line complete, and its Holm family too."""
        return self.complete and self.family_complete


def word(line: Line, low: float, high: float, null: float) -> str:
    if math.isnan(low):
        return "unsettled" if line.better == "above" else "cannot tell"
    if line.better == "above":
        return "holds" if low > null else "fails" if high < null else "unsettled"
    if low <= 0 <= high:
        return "cannot tell"
    if line.better == "either":
        return "differs"
    if line.better == "zero":
        return "contradicts"
    return "supports" if (high < 0) == (line.better == "lower") else "contradicts"


def judge(half: Half, design: Design, family: Family) -> list[Outcome]:
    """Every line of ``family``: the t test decides, Holm over the family where it says so (a
    line without data counts, its p as 1: the family keeps the size the protocol gave it)."""
    found = []
    for line in family.lines:
        null = math.log(line.margin) if line.better == "above" else 0.0
        d = paired(records(half, line, line.a), records(half, line, line.b), measure(line, half),
                   null)  # fmt: skip
        found.append(
            Outcome(
                line, d, null, d.p, 1 - design.alpha, sign_flip_p(d.differences, null), math.nan
            )
        )
    if family.correction == "holm":
        adjusted, levels = holm_steps([o.p for o in found], design.alpha)
        whole = all(o.complete for o in found)
        for o, p, level in zip(found, adjusted, levels, strict=True):
            o.p, o.level, o.family_complete = p, level, whole
    for o in found:
        o.detectable = detectable(o.difference.se, o.difference.n, o.level, design.power)
        # No t statistic (one seed, or no spread over seeds): the line cannot pass Holm, so its
        # interval, of width 0 where the differences agree, must not give it a word either.
        low, high = (math.nan, math.nan) if math.isnan(o.difference.p) else o.interval
        o.word = word(o.line, low, high, o.null)
    return found


def reading(design: Design, outcomes: list[Outcome]) -> str | None:
    """What the relative family's words mean, by the protocol's decision table."""
    words = {o.line.id: o.word for o in outcomes}
    return next((d.means for d in design.decisions if d.matches(words)), None)


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


PIN = PROTOCOL_FILE.with_suffix(".commit")  # the commit that fixed the protocol, and its hash


def protocol_hash() -> str:
    return hashlib.sha256(PROTOCOL_FILE.read_bytes()).hexdigest()


def protocol_commit() -> str | None:
    """The commit that fixed the protocol, as study/confirmatory.commit names it (a clone
    without the history, or a copy of the files, reads the same), None where the protocol's
    file is not the one that commit fixed (its SHA-256 differs from the pinned one)."""
    try:
        commit, digest = PIN.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return commit if digest == protocol_hash() else None


def made_after(protocol: str, commit: str) -> bool:
    """Whether ``commit`` (a record's; "+changes" marks a working tree that differed from it)
    is ``protocol`` or descends from it, its tree unchanged."""
    if not commit or commit.endswith("+changes"):
        return False
    return git("merge-base", "--is-ancestor", protocol, commit).returncode == 0


def before_protocol(half: Half, added: list[str], protocol: str | None) -> list[str]:
    """The records of the runs the protocol adds (``added``: their jobs' names) that were not
    made after its commit; every one of them where the protocol is not committed."""
    done = [name for name in added if name in half.commits]
    if protocol is None:
        return done
    return [name for name in done if not made_after(protocol, half.commits[name])]


HEAD = [
    "| line | a − b | difference [interval] | level | seeds | sign-flip p | detectable (80%) | "
    "verdict |",
    "|---|---|---|---|---|---|---|---|",
]


def said(o: Outcome, with_detectable: bool = True) -> str:
    """The line's word as the report prints it: on fewer seeds than the line names, or in a Holm
    family with a line that has fewer, marked provisional (the protocol decides on all)."""
    if o.difference.n == 0:
        return "no seed yet"
    text = o.word
    if with_detectable and o.word == "cannot tell" and not math.isnan(o.detectable):
        text += f" (detectable ±{o.detectable:.3g})"
    if not o.complete:
        text = f"*provisional, {o.difference.n} of {len(o.line.seeds)} seeds*: {text}"
    elif not o.family_complete:
        text = f"*provisional, its family short of seeds*: {text}"
    return text


def row(o: Outcome) -> str:
    low, high = o.interval
    d = ".3g"
    margin = f" (margin log {o.line.margin:g} = {o.null:.3g})" if o.line.margin else ""
    return (
        f"| {o.line.id}: {o.line.text} | {o.line.a} − {o.line.b}{margin} | "
        f"{fmt(o.difference.mean, d)} [{fmt(low, d)}, {fmt(high, d)}] | "
        f"{100 * o.level:.3g}% | {o.difference.n} | {plain(o.sign_flip, '.3g')} | "
        f"{plain(o.detectable, '.3g')} | {said(o)} |"
    )


def per_seed(half: Half, o: Outcome) -> list[str]:
    """One primary line seed by seed: a, b and their difference."""
    line, get = o.line, measure(o.line, half)
    a, b = records(half, line, line.a), records(half, line, line.b)
    cells = []
    for seed in line.seeds:
        try:
            values = (get(a[seed]), get(b[seed]))
        except UNMEASURED:
            cells.append(f"| {seed} | – | – | – |")
            continue
        cells.append(f"| {seed} | {values[0]:.4g} | {values[1]:.4g} | "
                     f"{fmt(values[0] - values[1], '.3g')} |")  # fmt: skip
    return [f"| seed | {line.a} | {line.b} | difference |", "|---|---|---|---|", *cells]
