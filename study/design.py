"""The confirmatory protocol (study/confirmatory.toml) as data: per dataset, its seeds, its
families of lines and the relative family's decision table. Read once, checked whole: a line
with an unknown measure, record, direction or method is refused, named, before any job runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from study.protocol import method_names
from utils.cli import InputError

PROTOCOL_FILE = Path(__file__).with_name("confirmatory.toml")
RECORDS = ("final", "averaged", "curve")
MEASURES = ("field", "log", "averaging_gain", "shift_drop", "nuisance", "fewest_labels",
            "authors_over_definition")  # fmt: skip
BETTER = ("lower", "higher", "either", "zero", "above")
CORRECTIONS = ("holm", "none")
WORDS = ("supports", "contradicts", "differs", "cannot tell", "holds", "fails", "unsettled")


@dataclass(frozen=True)
class Line:
    """One paired difference a − b of one measure over ``seeds``."""

    id: str
    claim: str
    text: str
    a: str
    b: str
    record: str
    measure: str
    better: str
    seeds: tuple[int, ...]
    field: str = ""
    variant: str = ""
    margin: float | None = None


@dataclass(frozen=True)
class Family:
    name: str
    correction: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Decision:
    when: dict[str, str]
    means: str

    def matches(self, words: dict[str, str]) -> bool:
        return all(w == "*" or words.get(i) == w for i, w in self.when.items())


@dataclass(frozen=True)
class Design:
    """One dataset's part of the protocol."""

    dataset: str
    seeds: tuple[int, ...]
    new_seeds: tuple[int, ...]
    families: tuple[Family, ...]
    decisions: tuple[Decision, ...] = ()
    averaged_passes: int = 0
    relative: str | None = None  # the relative family's method, where it has one
    alpha: float = 0.05
    power: float = 0.80
    words: dict[str, str] = field(default_factory=dict)  # what each verdict word means
    about: str = ""  # the test, in words

    def family(self, name: str) -> Family | None:
        return next((f for f in self.families if f.name == name), None)

    def lines(self, record: str | None = None) -> list[Line]:
        every = [line for f in self.families for line in f.lines]
        return [line for line in every if record is None or line.record == record]


def refuse(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}; restore it (git checkout -- {path.name})")


def read_line(path: Path, spec: dict, seeds: list[int], methods: set[str]) -> Line:
    where = f"line {spec.get('id', '?')}"
    for key, allowed in (("record", RECORDS), ("measure", MEASURES), ("better", BETTER)):
        if spec.get(key) not in allowed:
            raise refuse(path, f"{where} has {key} {spec.get(key)!r}, not one of {allowed}")
    for key in ("a", "b"):
        if spec.get(key) not in methods:
            raise refuse(path, f"{where} compares {spec.get(key)!r}, which the study lacks")
    if spec["measure"] in ("field", "log") and not spec.get("field"):
        raise refuse(path, f"{where} reads a field and names none")
    if (spec["better"] == "above") != ("margin" in spec):
        raise refuse(path, f"{where}: a margin goes with better = 'above', and only there")
    if "margin" in spec and not (isinstance(spec["margin"], (int, float)) and spec["margin"] > 0):
        raise refuse(path, f"{where} has margin {spec['margin']!r}: a ratio above 0")
    try:
        return Line(
            spec["id"], str(spec["claim"]), spec["text"], spec["a"], spec["b"], spec["record"],
            spec["measure"], spec["better"], tuple(spec.get("seeds", seeds)),
            spec.get("field", ""), spec.get("variant", ""), spec.get("margin"),
        )  # fmt: skip
    except KeyError as missing:
        raise refuse(path, f"{where} lacks {missing}") from None


def load(methods: set[str] | None = None, path: Path = PROTOCOL_FILE) -> dict[str, Design]:
    """Every dataset's design; ``methods``: the names lines may compare (default: the
    study's)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise refuse(path, f"cannot be read ({error})") from None
    try:
        return read_designs(path, data, method_names() if methods is None else methods)
    except KeyError as missing:
        raise refuse(path, f"lacks {missing}") from None
    except (TypeError, AttributeError) as error:
        raise refuse(path, f"has a value of the wrong kind ({error})") from None


def read_designs(path: Path, data: dict, methods: set[str]) -> dict[str, Design]:
    for key, high in (("alpha", 0.5), ("power", 0.95)):  # power: where `detectable` can solve it
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < high:
            raise refuse(path, f"has {key} = {value!r}; give a number between 0 and {high}")
    if data.get("test", {}).get("decides") != "paired t":
        raise refuse(path, "names a test other than the paired t, the only one the study has")
    designs = {}
    for dataset, part in data.items():
        if not isinstance(part, dict) or "family" not in part:
            continue
        families, relative = [], None
        for spec in part["family"]:
            if spec.get("correction") not in CORRECTIONS:
                raise refuse(path, f"family {spec.get('name')!r} has no known correction")
            seeds = spec.get("seeds", part["seeds"])
            lines = tuple(read_line(path, s, seeds, methods) for s in spec["lines"])
            if len({line.id for line in lines}) != len(lines):
                raise refuse(path, f"family {spec['name']!r} repeats a line id")
            families.append(Family(spec["name"], spec["correction"], lines))
            relative = spec.get("method", relative)
        decisions = tuple(Decision(d["when"], d["means"]) for d in part.get("decision", ()))
        ids = {line.id for f in families for line in f.lines}
        for d in decisions:
            if any(w != "*" and w not in WORDS for w in d.when.values()):
                raise refuse(path, f"a decision row names a word that is none of {WORDS}")
            if set(d.when) - ids:  # a row naming no line would never match
                raise refuse(path, f"a decision row names no line of {dataset}: "
                             f"{', '.join(sorted(set(d.when) - ids))}")  # fmt: skip
        designs[dataset] = Design(
            dataset, tuple(part["seeds"]), tuple(part.get("new_seeds", ())), tuple(families),
            decisions, part.get("averaged_passes", 0), relative, data["alpha"], data["power"],
            data["words"], data["test"]["about"],
        )  # fmt: skip
    return designs
