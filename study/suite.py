"""What the evaluation suite costs, and its numbers, on trained checkpoints.

    python3 -m study.suite CHECKPOINT [CHECKPOINT ...] [--random-init]
        [--out docs/results/suite] [--only-variance | --only-knn]

For each checkpoint it runs the dataset's evaluation script with ``--suite`` (every measure of
docs/evaluation.md at its defaults; ``--only-variance``: the conditional variance, with its ratio,
and the authors' computation alone; ``--only-knn``: the probe and the kNN votes beside it, records
in docs/results/knn by default) and writes a record, `<out>/<stem>[-random].json`: the
command, the machine, the wall time and the script's JSON line. It prints the wall time of the
probe (encoding and fit) and of each measure, and each measure's time as a multiple of the
probe's, measured in the same process, so that the ratios hold across machines of one kind.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from datasets.sources import DATASETS
from study.protocol import PROTOCOLS
from study.records import REPO, last_json, machine, read_record, shown, write_record
from study.runner import run
from utils.checkpoint import load_checkpoint
from utils.cli import UsageError, run_cli

# What `table` reads from every record; a record without it is damaged.
FIELDS = (
    "command:list", "machine:dict", "wall_seconds:num", "result.dataset:str", "result.random_init",
    "result.authors_variance.projected:num", "result.authors_variance.trace:num",
    "result.conditional_variance.theta:dict",
)  # fmt: skip
KNN_FIELDS = (
    "command:list", "machine:dict", "wall_seconds:num", "result.dataset:str", "result.random_init",
    "result.accuracy:num", "result.knn.weighted:dict", "result.knn.majority:dict",
)  # fmt: skip


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The evaluation suite's numbers and cost.")
    p.add_argument("checkpoints", nargs="*", type=Path, help="training checkpoints (.pth)")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="evaluate each checkpoint's architecture at random initialisation instead",
    )
    p.add_argument(
        "--only-variance",
        action="store_true",
        help="the conditional variance, the authors' computation and the ratio alone",
    )
    p.add_argument(
        "--only-knn",
        action="store_true",
        help="the probe and the kNN votes (lbfgs_linear_clf.py --knn) alone; classification only",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="print the tables of docs/evaluation.md from the records in --out; run nothing",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the records (default: docs/results/suite; docs/results/knn with "
        "--only-knn)",
    )
    return p


def _g(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def table(folder: Path) -> str:
    """Markdown tables of every record in ``folder``, one per dataset, a row per record."""
    records = sorted(folder.glob("*.json"))
    if not records:
        raise UsageError(f"no records in {folder}; run the suite on checkpoints first")
    lines = []
    for dataset in PROTOCOLS:
        mine = [r for r in records if read_record(r, FIELDS)["result"]["dataset"] == dataset]
        # SimCLR, InvCLR, then the random-initialisation baselines.
        mine.sort(key=lambda r: ("random" in r.stem, "invclr" in r.stem, r.stem))
        rows = [read_record(r, FIELDS) for r in mine]
        if not rows:
            continue
        score, variants = PROTOCOLS[dataset].metric, PROTOCOLS[dataset].variances
        head = [f"`{r.stem.removeprefix(dataset + '-')}`" for r in mine]
        lines += [f"**{dataset}**", "", "| measure | " + " | ".join(head) + " |",
                  "|---" * (len(rows) + 1) + "|"]  # fmt: skip

        def row(label: str, values: list[str], lines: list[str] = lines) -> None:
            lines.append(f"| {label} | " + " | ".join(values) + " |")

        results = [r["result"] for r in rows]
        row("weights", ["random init" if x["random_init"] else "trained" for x in results])
        row(f"probe {score}", [_g(x[score], 4) for x in results])
        for v in variants:
            cv = [x["conditional_variance"][v] for x in results]
            row(f"conditional variance, {v} (εᵀẑ)", [_g(c["conditional_variance"]) for c in cv])
            row(f"trace, {v}", [_g(c["trace"]) for c in cv])
            row(f"across images, {v}", [_g(c["across"]) for c in cv])
            row(f"ratio, {v}", [_g(c["ratio"]) for c in cv])
        row("authors' computation, εᵀẑ", [_g(x["authors_variance"]["projected"]) for x in results])
        row("authors' computation, trace", [_g(x["authors_variance"]["trace"]) for x in results])
        full = next((x for x in results if "averaging_curve" in x), None)
        if full is not None:  # the suite's other measures, "–" where a record lacks them
            for point in full["averaging_curve"]["points"]:
                key = (point["passes"], point["images"])
                row(f"averaging M = {key[0]} ({key[1]})", [
                    _g(next(q[score] for q in x["averaging_curve"]["points"]
                            if (q["passes"], q["images"]) == key), 4)
                    if "averaging_curve" in x else "–" for x in results
                ])  # fmt: skip
            for flag in [k for k in full if k.startswith("shift")]:
                for i, s in enumerate(full[flag]):
                    row(f"{flag} {s['amount']:g}", [
                        _g(x[flag][i][score], 4) if flag in x else "–" for x in results
                    ])  # fmt: skip
            row("nuisance MSE / baseline", [
                _g(x["nuisance"]["relative"]) if "nuisance" in x else "–" for x in results
            ])  # fmt: skip
            for i, f in enumerate(full["label_fractions"]):
                row(f"labels {f['fraction']:g}", [
                    _g(x["label_fractions"][i][score], 4) if "label_fractions" in x else "–"
                    for x in results
                ])  # fmt: skip
        row("wall time (s)", [f"{r['wall_seconds']:.0f}" for r in rows])
        lines.append("")
    return "\n".join(lines)


def knn_table(folder: Path) -> str:
    """A markdown table of the ``--only-knn`` records in ``folder``: a column per record."""
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise UsageError(f"no records in {folder}; run the suite with --only-knn first")
    paths.sort(key=lambda r: ("random" in r.stem, "invclr" in r.stem, r.stem))
    results = [read_record(r, KNN_FIELDS)["result"] for r in paths]
    lines = ["| measure | " + " | ".join(f"`{r.stem}`" for r in paths) + " |",
             "|---" * (len(paths) + 1) + "|"]  # fmt: skip
    votes = [("weighted", "kNN, weighted vote (k {k}, T {temperature:g})"),
             ("majority", "kNN, majority vote (k {k})")]  # fmt: skip
    rows = [("weights", ["random init" if x["random_init"] else "trained" for x in results]),
            ("probe accuracy (%)", [f"{x['accuracy']:.2f}" for x in results])]  # fmt: skip
    for name, label in votes:
        settings = {label.format(**x["knn"][name]) for x in results}
        label = settings.pop() if len(settings) == 1 else f"kNN, {name} vote"
        rows.append((label + " (%)", [f"{x['knn'][name]['accuracy']:.2f}" for x in results]))
    rows.append(("seconds (encoding, probe and kNN)", [f"{x['seconds']:.0f}" for x in results]))
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> list[dict]:
    if args.only_knn and args.only_variance:
        raise UsageError("--only-knn and --only-variance pick two different runs; give one")
    if args.out is None:
        args.out = REPO / "docs" / "results" / ("knn" if args.only_knn else "suite")
    if args.table:
        print(knn_table(args.out) if args.only_knn else table(args.out))
        return []
    if not args.checkpoints:
        raise UsageError("give checkpoints to evaluate, or --table to print the records")
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for checkpoint in args.checkpoints:
        run_args = load_checkpoint(checkpoint).get("args", {})
        info = DATASETS.get(run_args.get("dataset"))
        if info is None:
            raise UsageError(f"{checkpoint} names no known dataset; give a training checkpoint")
        name = checkpoint.stem + ("-random" if args.random_init else "")
        measures = ["--suite"]
        if args.only_knn and info.task != "classification":
            raise UsageError(f"--only-knn: {checkpoint} is a {info.name} run, with no classes")
        if args.only_knn:
            measures = ["--knn"]
        if args.only_variance:
            # The ratio is in the conditional variance's fields; --invariance would add time
            # that measure_seconds does not count.
            measures = ["--conditional-variance", "--authors-variance"]
        command = [
            info.evaluation_script, "--load-from", str(checkpoint.resolve()), "--device", "cpu",
            *measures, *(["--random-init"] if args.random_init else []),
        ]  # fmt: skip
        log = args.out / f"{name}.log"
        seconds = run(command, log)
        result = last_json(log)
        log.unlink()
        record = {
            "command": ["python3", *command[:2], shown(checkpoint), *command[3:]],
            "machine": machine(),
            "wall_seconds": round(seconds, 1),
            "result": result,
            "date": time.strftime("%Y-%m-%d"),
        }
        write_record(args.out / f"{name}.json", record)
        parts = result.get("measure_seconds", {})
        probe = result["seconds"] - sum(parts.values())
        print(f"{name}: {seconds:.0f} s in all; probe (encode and fit) {probe:.1f} s")
        for measure, taken in parts.items():
            print(f"  {measure:<24} {taken:8.1f} s  {taken / probe:6.2f}x the probe")
        records.append(record)
    return records


if __name__ == "__main__":
    run_cli(main, get_args_parser())
