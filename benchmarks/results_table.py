"""The README's results table from the outputs of `benchmarks/results.sh`.

    python3 -m benchmarks.results_table results --readme README.md

Reads `<out>/<dataset>-<method>-seed<N>.eval.json` (the evaluation scripts' last line) and, for
trained runs, the training wall time from `<out>/<name>.metrics.jsonl`; prints a markdown table
of mean ± standard deviation over seeds, and with ``--readme`` puts it between the file's
`<!-- results:start -->` and `<!-- results:end -->` markers.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from utils.cli import UsageError, run_cli
from utils.metrics import read_metrics

NAME = re.compile(r"(?P<dataset>spirograph|cifar10)-(?P<method>.+)-seed(?P<seed>\d+)\.eval\.json")
METHODS = {
    "gp0": "SimCLR (λ = 0)",
    "gp0.01": "InvCLR (λ = 1e-2)",
    "gp0.1": "InvCLR (λ = 0.1)",
    "random": "random-initialisation encoder",
    "pixels": "raw pixels",
}
START, END = "<!-- results:start -->", "<!-- results:end -->"


def spread(values: list[float], digits: str) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:{digits}}"
    return f"{mean:{digits}} ± {statistics.stdev(values):{digits}}"


def collect(out: Path) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(out.glob("*.eval.json")):
        match = NAME.fullmatch(path.name)
        if match is None:
            continue
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UsageError(f"{path} is not an evaluation's JSON line; rerun that step") from None
        metrics = out / path.name.replace(".eval.json", ".metrics.jsonl")
        if match["method"].startswith("gp") and metrics.is_file():
            result["wall_s"] = read_metrics(metrics)[-1]["wall_s"]
        groups.setdefault((match["dataset"], match["method"]), []).append(result)
    if not groups:
        raise UsageError(f"no <dataset>-<method>-seed<N>.eval.json in {out}; run results.sh")
    return groups


def table(groups: dict[tuple[str, str], list[dict]]) -> str:
    lines = [
        "| dataset | encoder | seeds | test MSE ↓ / accuracy ↑ | invariance ↓ | training time |",
        "|---|---|---|---|---|---|",
    ]
    for dataset in ("spirograph", "cifar10"):
        for method, label in METHODS.items():
            results = groups.get((dataset, method))
            if not results:
                continue
            if dataset == "spirograph":
                score = spread([r["mse"] for r in results], ".4f")
            else:
                score = spread([r["accuracy"] for r in results], ".2f") + " %"
            walls = [r["wall_s"] / 60 for r in results if "wall_s" in r]
            wall = spread(walls, ".1f") + " min" if walls else "–"
            invariance = spread([r["invariance"] for r in results if "invariance" in r], ".3f")
            lines.append(
                f"| {dataset} | {label} | {len(results)} | {score} | {invariance} | {wall} |"
            )
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", type=Path, help="the folder results.sh wrote")
    p.add_argument("--readme", type=Path, default=None, help="put the table into this file")
    return p


def main(args: argparse.Namespace) -> str:
    text = table(collect(args.out))
    print(text)
    if args.readme is not None:
        readme = args.readme.read_text()
        if START not in readme or END not in readme:
            raise UsageError(f"{args.readme} lacks the {START} and {END} markers")
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        args.readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
        print(f"updated {args.readme}")
    return text


if __name__ == "__main__":
    run_cli(main, get_args_parser())
