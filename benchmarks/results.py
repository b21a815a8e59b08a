"""The README's small-compute results: SimCLR and InvCLR against a random-initialisation encoder.

    python3 -m benchmarks.results                          # both halves, seeds 0 1 2
    python3 -m benchmarks.results --datasets spirograph    # one half
    python3 -m benchmarks.results --table-only             # the table from docs/results/

For each dataset and seed it trains SimCLR (λ = 0) and InvCLR with the settings of `PROTOCOL`,
evaluates both with the evaluation script, and evaluates the same network at random
initialisation. Every run writes `docs/results/<dataset>-<method>-seed<N>.json` as soon as it ends:
the evaluation script's JSON, the exact commands, the training's per-epoch metrics (the clamp
fraction among them), the training and evaluation times, and the machine. A run whose JSON
exists is skipped, and a training whose checkpoint exists is resumed from it, so the halves can
run at different times and an interrupted script picks up where it stopped (`--redo` starts
afresh). Checkpoints and logs go to `--out` (ignored by git). Then the training curves of the
first seed go to `docs/curves-<dataset>.png`, a preview of the views to
`docs/<dataset>.preview.png`, and the table, built from the JSON files alone, between the
`<!-- results:start -->` and `<!-- results:end -->` markers of the README.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from utils.cli import UsageError, run_cli, seed_value
from utils.metrics import read_metrics
from utils.plot import plot_runs

REPO = Path(__file__).resolve().parent.parent
# The settings of each half. Both use a quarter-width ResNet-18 (--width 0.25): at full width a
# CPU reaches too few steps in the time budget for the representation to learn much.
PROTOCOL: dict[str, dict[str, Any]] = {
    "spirograph": {
        "train": [
            "--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25",
            "--proportion", "0.05", "--batch-size", "64", "--base-lr", "1.5",
            "--num-epochs", "10", "--test-freq", "0",
        ],
        "methods": {
            "simclr": ["--lambda-gp", "0"],
            "invclr": ["--lambda-gp", "1e-2", "--gp-upper-limit", "1000"],
        },
        "script": "lbfgs_linear_clf_spirograph.py",
        "evaluate": ["--reg-weight", "auto", "--invariance", "10", "--invariance-images", "1000"],
        "metric": "mse",
    },
    "cifar10": {
        "train": [
            "--dataset", "cifar10", "--arch", "resnet18", "--width", "0.25",
            "--proportion", "0.2", "--batch-size", "64", "--base-lr", "1.5",
            "--num-epochs", "10", "--test-freq", "0",
        ],
        "methods": {
            "simclr": ["--lambda-gp", "0"],
            # The paper's CIFAR setting. At this scale the limit binds on a quarter to a half of
            # the first epoch's steps and on none after (README): the penalty acts.
            "invclr": ["--lambda-gp", "0.1", "--gp-upper-limit", "1"],
        },
        "script": "lbfgs_linear_clf.py",
        # Plain images, the evaluation's default for natural images.
        "evaluate": ["--reg-weight", "auto", "--invariance", "10", "--invariance-images", "1000"],
        "metric": "accuracy",
    },
}  # fmt: skip
LABELS = {
    "simclr": "SimCLR (λ = 0)",
    "invclr": "InvCLR",
    "random": "random-initialisation encoder",
}
START, END = "<!-- results:start -->", "<!-- results:end -->"
# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom (normal beyond).
T_95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def machine() -> dict[str, Any]:
    """What the numbers ran on: processor, the instruction sets that change CPU speed, torch."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": torch.get_num_threads(),
        "avx512": "avx512f" in flags,
        "amx": "amx_tile" in flags,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def shown(path: Path) -> str:
    """A path as a command written into a record shows it: relative to the repository."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def run(command: list[str], log: Path) -> float:
    """Run a project script to completion, its output into ``log``; returns the seconds taken.
    A failure is a `UsageError` naming the log."""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, *command], cwd=REPO, stdout=out, stderr=out)
    if code != 0:
        raise UsageError(f"`python3 {shlex.join(command)}` failed (exit {code}); see {log}")
    return time.perf_counter() - start


def last_json(log: Path) -> dict[str, Any]:
    """The evaluation script's JSON line: the last line of its log that is a JSON object."""
    for line in reversed(log.read_text().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise UsageError(f"{log} holds no JSON result line; see the log, then rerun")


def defining_flags(dataset: str, method: str, seed: int) -> dict[str, str]:
    """What a record's commands must contain to belong to the current protocol."""
    spec = PROTOCOL[dataset]
    evaluate = [*spec["evaluate"], "--seed", str(seed)]
    if method == "random":
        return {"eval_command": shlex.join([*evaluate, "--random-init"])}
    train = [*spec["train"], *spec["methods"][method], "--seed", str(seed)]
    return {"train_command": shlex.join(train), "eval_command": shlex.join(evaluate)}


def check_record(path: Path, record: dict[str, Any], dataset: str, method: str, seed: int) -> None:
    """Refuse a record made with other settings than the current `PROTOCOL`'s: the table's
    caption describes the protocol, so it must describe every number under it."""
    if dataset not in PROTOCOL or method not in LABELS:
        raise UsageError(f"{path} names no dataset and method of the protocol; delete it")
    for key, flags in defining_flags(dataset, method, seed).items():
        # Before plain images were the default, CIFAR records asked for them by this flag.
        if flags not in record.get(key, "").replace(" --untransformed", ""):
            raise UsageError(
                f"{path} was made with other settings than the protocol's ({key} lacks "
                f"`{flags}`); rerun it with --redo, or delete it"
            )


def train_and_evaluate(
    dataset: str, method: str, seed: int, out: Path, record: Path
) -> dict[str, Any]:
    """One row's run: train (resuming a checkpoint left by an interrupted run), evaluate, and
    write the record."""
    spec = PROTOCOL[dataset]
    name = f"{dataset}-{method}-seed{seed}"
    checkpoint = out / f"{name}.pth"
    train = ["invariance_by_gradient.py", *spec["train"], *spec["methods"][method]]
    train += ["--seed", str(seed), "--device", "cpu", "--checkpoint-dir", shown(out)]
    train += ["--filename", name]
    resume = ["--resume", shown(checkpoint)] if checkpoint.is_file() else []
    print(f"== {name}: training" + (" (resuming its checkpoint)" if resume else ""), flush=True)
    run([*train, *resume], out / f"{name}.train.log")
    evaluate = [spec["script"], "--load-from", shown(checkpoint), "--device", "cpu"]
    evaluate += [*spec["evaluate"], "--seed", str(seed)]
    print(f"== {name}: evaluation", flush=True)
    seconds = run(evaluate, out / f"{name}.eval.log")
    epochs = read_metrics(out / f"{name}.metrics.jsonl")
    return write_record(
        record / f"{name}.json",
        last_json(out / f"{name}.eval.log"),
        train_command=f"python3 {shlex.join(train)}",
        eval_command=f"python3 {shlex.join(evaluate)}",
        train_time_s=epochs[-1]["wall_s"],
        eval_time_s=seconds,
        epochs=epochs,
    )


def evaluate_random(dataset: str, seed: int, out: Path, record: Path) -> dict[str, Any]:
    """The same network at random initialisation (seeded by ``seed``), with the same probe."""
    spec = PROTOCOL[dataset]
    name = f"{dataset}-random-seed{seed}"
    checkpoint = out / f"{dataset}-simclr-seed{seed}.pth"  # read for its architecture only
    if not checkpoint.exists():
        raise UsageError(
            f"{checkpoint} is missing: the random-initialisation row reads its architecture; "
            f"rerun with --redo to train {dataset}'s SimCLR seed {seed} again"
        )
    evaluate = [spec["script"], "--load-from", shown(checkpoint), "--device", "cpu"]
    evaluate += [*spec["evaluate"], "--seed", str(seed), "--random-init"]
    print(f"== {name}: evaluation", flush=True)
    seconds = run(evaluate, out / f"{name}.eval.log")
    return write_record(
        record / f"{name}.json",
        last_json(out / f"{name}.eval.log"),
        eval_command=f"python3 {shlex.join(evaluate)}",
        eval_time_s=seconds,
    )


def write_record(path: Path, evaluation: dict[str, Any], **fields: Any) -> dict[str, Any]:
    record = {**evaluation, **fields, "machine": machine()}
    record.pop("checkpoint", None)  # a path on the machine that ran it
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def read_records(
    record: Path, required: bool = True
) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """(dataset, method) -> seed -> record, from the JSON files of `record`, each checked
    against the protocol."""
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for path in sorted(record.glob("*-seed*.json")):
        try:
            dataset, method, seed_name = path.stem.rsplit("-", 2)
            seed = int(seed_name.removeprefix("seed"))
            content = json.loads(path.read_text())
            if not isinstance(content, dict):
                raise ValueError("not an object")
            check_record(path, content, dataset, method, seed)
            groups.setdefault((dataset, method), {})[seed] = content
        except (json.JSONDecodeError, ValueError):
            raise UsageError(f"{path} is not a results record; delete it and rerun") from None
    if not groups and required:
        raise UsageError(f"no results records in {record}; run python3 -m benchmarks.results")
    return groups


def clamp_fraction(record: dict[str, Any]) -> float | None:
    """Penalised steps at the clamp over all penalised steps of the run (epochs weigh alike:
    each has the same number of steps)."""
    rows = record.get("epochs", [])
    fractions = [row["clamp_fraction"] for row in rows if row.get("clamp_fraction") is not None]
    return statistics.fmean(fractions) if fractions else None


def spread(values: list[float], digits: str) -> str:
    if len(values) < 2:
        return f"{values[0]:{digits}}" if values else "–"
    return f"{statistics.fmean(values):{digits}} ± {statistics.stdev(values):{digits}}"


def paired(
    invclr: dict[int, dict[str, Any]], simclr: dict[int, dict[str, Any]], key: str
) -> tuple[float, float, float, int]:
    """Mean, standard error and 95% half-width of InvCLR − SimCLR over the seeds both have."""
    seeds = sorted(set(invclr) & set(simclr))
    differences = [invclr[s][key] - simclr[s][key] for s in seeds]
    if len(differences) < 2:
        mean = differences[0] if differences else float("nan")
        return mean, float("nan"), float("nan"), len(differences)
    se = statistics.stdev(differences) / len(differences) ** 0.5
    t = T_95[len(differences) - 2] if len(differences) - 1 <= len(T_95) else 1.96
    return statistics.fmean(differences), se, t * se, len(differences)


def verdict(mean: float, half_width: float, better_when_lower: bool, paper: bool = True) -> str:
    """Whether a paired difference supports the paper (InvCLR better), contradicts it, or is
    within the noise of the seeds (95% interval containing 0). A measure the paper does not use
    (``paper`` False: the invariance ratio) only says which way it went: a verdict on the paper's
    claims is measured its way (docs/evaluation.md)."""
    if not half_width == half_width or abs(mean) <= half_width:
        return "too noisy to tell (the 95% interval includes 0)"
    if not paper:
        return "lower for InvCLR" if mean < 0 else "higher for InvCLR"
    better = mean < 0 if better_when_lower else mean > 0
    return "supports the paper's claim" if better else "contradicts the paper's claim"


def caption(rows: dict[str, dict[int, dict[str, Any]]], spec: dict[str, Any]) -> str:
    """The protocol in words, from the training flags and what the records say was measured."""
    flags = dict(zip(spec["train"][::2], spec["train"][1::2], strict=True))
    first = next(iter(next(iter(rows.values())).values()))
    # Records from before the evaluation said its views: plain only with --untransformed.
    views = first.get("views") or ("plain" if first.get("untransformed") else "augmented")
    if views == "plain":
        images = "plain images"
    elif first["num_passes"] == 1:
        images = "one augmented view per image"
    else:
        images = f"the mean of {first['num_passes']} augmented views per image"
    weights = sorted({r["reg_weight"] for records in rows.values() for r in records.values()})
    return (
        f"{flags['--arch']} at width {flags['--width']}, {flags['--num-epochs']} epochs on "
        f"{first['n_train']:,} training images (batch {flags['--batch-size']}, base-lr "
        f"{flags['--base-lr']}, constant rate); probe fitted on the {first['n_train']:,} labelled "
        f"training images and scored on {first['n_test']:,} test images, {images}, reg-weight "
        f"auto (chose {', '.join(f'{w:g}' for w in weights)}); invariance over "
        f"{first['invariance_draws']} draws on {first['invariance_images']:,} test images."
    )


def against_random(rows: dict[str, dict[int, dict[str, Any]]], metric: str) -> list[str]:
    """Each trained encoder against the random-initialisation one of the same seed: the MSE
    ratio, or the accuracy difference in points."""
    if "random" not in rows:
        return []
    lines = []
    for method in ("simclr", "invclr"):
        seeds = sorted(set(rows.get(method, {})) & set(rows["random"]))
        if not seeds:
            continue
        if metric == "mse":
            values = [rows[method][s]["mse"] / rows["random"][s]["mse"] for s in seeds]
            text = ", ".join(f"×{v:.2f}" for v in values)
            what = "test MSE over the random-initialisation encoder's"
        else:
            values = [rows[method][s]["accuracy"] - rows["random"][s]["accuracy"] for s in seeds]
            text = ", ".join(f"{v:+.1f}" for v in values)
            what = "accuracy minus the random-initialisation encoder's, in points"
        lines.append(f"- {LABELS[method].split(' (')[0]}: {what}, seeds {seeds}: {text}.")
    return [*lines, ""] if lines else []


def table(groups: dict[tuple[str, str], dict[int, dict[str, Any]]]) -> str:
    lines = []
    for dataset, spec in PROTOCOL.items():
        rows = {m: groups[(dataset, m)] for m in LABELS if (dataset, m) in groups}
        if not rows:
            continue
        metric = spec["metric"]
        unit, digits = ("test MSE ↓", ".4f") if metric == "mse" else ("test accuracy (%) ↑", ".2f")
        lines += [
            f"**{dataset}**: {caption(rows, spec)}",
            "",
            f"| encoder | {unit} | per seed | invariance ↓ (across draws / across images) "
            "| clamped | training time |",
            "|---|---|---|---|---|---|",
        ]
        for method, records in rows.items():
            ordered = [records[s] for s in sorted(records)]
            scores = [r[metric] for r in ordered]
            per_seed = ", ".join(f"{v:{digits}}" for v in scores)
            invariance = spread([r["invariance"] for r in ordered], ".3f")
            within = statistics.fmean(r["invariance_within"] for r in ordered)
            across = statistics.fmean(r["invariance_across"] for r in ordered)
            clamped = [c for r in ordered if (c := clamp_fraction(r)) is not None]
            walls = [r["train_time_s"] / 60 for r in ordered if "train_time_s" in r]
            label = method_label(dataset, method)
            lines.append(
                f"| {label} | {spread(scores, digits)} | {per_seed} | {invariance} "
                f"({within:.3g} / {across:.3g}) | "
                + (f"{100 * statistics.fmean(clamped):.0f}%" if clamped else "–")
                + f" | {spread(walls, '.1f') + ' min' if walls else '–'} |"
            )
        lines.append("")
        lines += against_random(rows, metric)
        if "simclr" in rows and "invclr" in rows:
            for key, name, lower, paper in (
                (metric, unit.split(" ")[1] if metric == "mse" else "accuracy", metric == "mse",
                 True),
                ("invariance", "invariance ratio (this project's measure)", True, False),
            ):  # fmt: skip
                mean, se, half, n = paired(rows["invclr"], rows["simclr"], key)
                lines.append(
                    f"- InvCLR − SimCLR, {name} (paired by seed, {n} seeds): {mean:+.4g} ± "
                    f"{se:.2g} (standard error): {verdict(mean, half, lower, paper)}."
                )
            lines.append("")
        unconverged = [
            f"{dataset}-{m}-seed{s}"
            for m, records in rows.items()
            for s, r in records.items()
            if not r.get("converged") or r.get("reg_search_converged") is False
        ]
        if unconverged:
            lines.append(f"- Probe NOT converged for {', '.join(unconverged)}.")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def method_label(dataset: str, method: str) -> str:
    if method != "invclr":
        return LABELS[method]
    flags = dict(zip(*[iter(PROTOCOL[dataset]["methods"]["invclr"])] * 2, strict=True))
    return f"InvCLR (λ = {flags['--lambda-gp']}, limit {flags['--gp-upper-limit']})"


def plot_curves(groups, dataset: str, seed: int, path: Path) -> None:
    runs = {
        method_label(dataset, m): groups[(dataset, m)][seed]["epochs"]
        for m in ("simclr", "invclr")
        if seed in groups.get((dataset, m), {})
    }
    if runs:
        plot_runs(runs, path)
        print(f"wrote {path}")


def write_readme(readme: Path, text: str) -> None:
    content = readme.read_text()
    if START not in content or END not in content:
        raise UsageError(f"{readme} lacks the {START} and {END} markers")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}{END}{tail}")
    print(f"updated {readme}")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=list(PROTOCOL),
        default=None,
        help="halves to run (default: both)",
    )
    p.add_argument(
        "--seeds", nargs="+", type=seed_value, default=[0, 1, 2], help="seeds (default: 0 1 2)"
    )
    p.add_argument(
        "--out", type=Path, default=REPO / "results", help="checkpoints and logs (results/)"
    )
    p.add_argument(
        "--record",
        type=Path,
        default=REPO / "docs" / "results",
        help="JSON records (docs/results/)",
    )
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="where the PNGs go (docs/)")
    p.add_argument(
        "--readme", type=Path, default=REPO / "README.md", help="file whose table is replaced"
    )
    p.add_argument(
        "--table-only", action="store_true", help="run nothing; rebuild the table from --record"
    )
    p.add_argument(
        "--redo", action="store_true", help="rerun runs whose record exists (and retrain afresh)"
    )
    return p


def main(args: argparse.Namespace) -> str:
    if not args.readme.is_file():  # before an hour of runs, not after
        raise UsageError(f"--readme {args.readme} is not a file; give the README to update")
    if args.table_only and (args.redo or args.datasets):
        raise UsageError("--table-only runs nothing; drop --redo and --datasets (it tabulates all)")
    if not args.table_only:
        args.out.mkdir(parents=True, exist_ok=True)
        args.record.mkdir(parents=True, exist_ok=True)
        if not args.redo:
            read_records(args.record, required=False)  # refuse stale records before any run
        for dataset in args.datasets or list(PROTOCOL):
            start = time.perf_counter()
            for seed in args.seeds:
                for method in PROTOCOL[dataset]["methods"]:
                    name = f"{dataset}-{method}-seed{seed}"
                    if args.redo:
                        (args.out / f"{name}.pth").unlink(missing_ok=True)
                    if args.redo or not (args.record / f"{name}.json").is_file():
                        train_and_evaluate(dataset, method, seed, args.out, args.record)
                if args.redo or not (args.record / f"{dataset}-random-seed{seed}.json").is_file():
                    evaluate_random(dataset, seed, args.out, args.record)
            preview = ["invariance_by_gradient.py", *PROTOCOL[dataset]["train"], "--preview", "4"]
            preview += ["--checkpoint-dir", shown(args.docs), "--filename", dataset]
            run(preview, args.out / f"{dataset}.preview.log")
            print(f"{dataset}: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    groups = read_records(args.record)
    for dataset in PROTOCOL:
        plot_curves(groups, dataset, min(args.seeds), args.docs / f"curves-{dataset}.png")
    text = table(groups)
    print(text)
    write_readme(args.readme, text)
    return text


if __name__ == "__main__":
    run_cli(main, get_args_parser())
