"""What the evaluation suite costs, and its numbers, on trained checkpoints.

    python3 -m benchmarks.evaluation_suite CHECKPOINT [CHECKPOINT ...] [--random-init]
        [--out docs/results/suite] [--only-variance]

For each checkpoint it runs the dataset's evaluation script with ``--suite`` (every measure of
docs/evaluation.md at its defaults; ``--only-variance``: the conditional variance, with its ratio,
and the authors' computation alone) and writes a record, `<out>/<stem>[-random].json`: the
command, the machine, the wall time and the script's JSON line. It prints the wall time of the
probe (encoding and fit) and of each measure, and each measure's time as a multiple of the
probe's, measured in the same process, so that the ratios hold across machines of one kind.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.results import REPO, last_json, machine, run, shown
from datasets.sources import DATASETS
from utils.checkpoint import load_checkpoint
from utils.cli import UsageError, run_cli


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The evaluation suite's numbers and cost.")
    p.add_argument("checkpoints", nargs="+", type=Path, help="training checkpoints (.pth)")
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
        "--out",
        type=Path,
        default=REPO / "docs" / "results" / "suite",
        help="folder of the records (default: docs/results/suite)",
    )
    return p


def main(args: argparse.Namespace) -> list[dict]:
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for checkpoint in args.checkpoints:
        run_args = load_checkpoint(checkpoint).get("args", {})
        info = DATASETS.get(run_args.get("dataset"))
        if info is None:
            raise UsageError(f"{checkpoint} names no known dataset; give a training checkpoint")
        name = checkpoint.stem + ("-random" if args.random_init else "")
        measures = ["--suite"]
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
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        parts = result.get("measure_seconds", {})
        probe = result["seconds"] - sum(parts.values())
        print(f"{name}: {seconds:.0f} s in all; probe (encode and fit) {probe:.1f} s")
        for measure, taken in parts.items():
            print(f"  {measure:<24} {taken:8.1f} s  {taken / probe:6.2f}x the probe")
        records.append(record)
    return records


if __name__ == "__main__":
    run_cli(main, get_args_parser())
