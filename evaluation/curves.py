"""A training run's per-epoch rows for people: the line printed after each epoch, and curves
from metrics files, several runs overlaid for an ablation.

    python3 -m evaluation.curves checkpoint/plain.metrics.jsonl checkpoint/gp.metrics.jsonl

writes checkpoint/curves.png, beside the first metrics file (-o elsewhere.png to choose). One panel
per quantity: contrastive loss, penalty (with its `--gp-upper-limit` as a dashed line),
the share of penalised steps at which the penalty sat at that clamp, total loss, learning rate,
the in-training probe's accuracy / cross-entropy or MSE (`--test-freq`) and the kNN accuracies
(`--knn-freq`) where the runs have them. Each run is labelled with its file name, without
`.metrics.jsonl`, unless `--labels` names them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from utils.checkpoint import save_figure
from utils.cli import DefaultsHelpFormatter, UsageError, run_cli
from utils.metrics import read_metrics

PANELS = (
    ("contrastive_loss", "NT-Xent loss"),
    ("penalty", "gradient penalty (dashed: its clamp)"),
    ("clamp_fraction", "share of penalised steps at the clamp"),
    ("loss", "total loss"),
    ("lr", "learning rate"),
    ("test_accuracy", "probe accuracy (%)"),
    ("test_loss", "probe cross-entropy"),
    ("test_mse", "probe MSE"),
    ("knn_weighted_accuracy", "kNN accuracy, weighted vote (%)"),
    ("knn_majority_accuracy", "kNN accuracy, majority vote (%)"),
)


class DescriptionKeptHelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """Flags with their defaults, and the description's lines as written."""


def run_label(path: Path) -> str:
    return path.name.removesuffix(".jsonl").removesuffix(".metrics")


def plot_runs(runs: dict[str, list[dict]], out: Path) -> list[str]:
    """Draw every panel some run has values for; returns the panels drawn."""

    def drawn(key: str) -> bool:
        values = [row.get(key) for rows in runs.values() for row in rows]
        if key == "penalty":  # runs without the penalty record it as 0
            return any(values)
        return any(value is not None for value in values)

    # Not pyplot: no global figure state, no display needed. Imported here, as training prints
    # its lines without matplotlib.
    from matplotlib.figure import Figure

    keys = [(k, t) for k, t in PANELS if drawn(k)]
    columns = min(3, len(keys))
    rows_of_panels = -(-len(keys) // columns)
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows_of_panels))
    axes = fig.subplots(rows_of_panels, columns, squeeze=False).ravel()
    for ax, (key, title) in zip(axes, keys, strict=False):
        for index, (label, rows) in enumerate(runs.items()):
            points = [(row["epoch"], row[key]) for row in rows if row.get(key) is not None]
            if key == "penalty" and not any(value for _, value in points):
                continue  # a run without the penalty records it as 0
            if points:
                epochs, values = zip(*points, strict=True)
                colour = f"C{index}"  # a run keeps its colour in every panel
                marker = "o" if len(points) < 30 else None
                ax.plot(epochs, values, marker=marker, label=label, color=colour)
                limits = {row["gp_upper_limit"] for row in rows if "gp_upper_limit" in row}
                if key == "penalty" and len(limits) == 1:
                    ax.axhline(limits.pop(), color=colour, linestyle="--", linewidth=1)
                if key == "penalty" and min(values) > 0:
                    ax.set_yscale("log")  # it falls by orders of magnitude as training goes
                if key == "clamp_fraction":
                    ax.set_ylim(-0.05, 1.05)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, dpi=90)
    return [k for k, _ in keys]


def format_epoch(row: dict[str, Any], num_epochs: int) -> str:
    """The line printed after each epoch, and a warning line when the penalty sat at its clamp
    on most of the epoch's penalised steps."""
    line = (
        f"epoch {row['epoch'] + 1:>4}/{num_epochs}  lr {row['lr']:.4g}  "
        f"c-loss {row['contrastive_loss']:.4f}  "
        + (f"penalty {row['penalty']:.4g}  " if "penalty" in row else "")  # none this epoch
        + f"loss {row['loss']:.4f}  {row['images_per_s']:.0f} img/s  {row['time_s']:.1f} s"
    )
    if "spread" in row:  # --gp-scale spread: the penalty above is the quotient
        line += f"  spread {row['spread']:.4g}"
    if row.get("clamp_fraction") is not None:
        line += f"  clamped {row['clamp_fraction']:.0%}"
    if "test_accuracy" in row:
        line += f"  probe acc {row['test_accuracy']:.2f}% loss {row['test_loss']:.4f}"
    if "test_mse" in row:
        line += f"  probe mse {row['test_mse']:.5f}"
    if "knn_weighted_accuracy" in row:
        line += (
            f"  kNN acc {row['knn_weighted_accuracy']:.2f}% weighted "
            f"{row['knn_majority_accuracy']:.2f}% majority"
        )
    if (row.get("clamp_fraction") or 0) > 0.5:
        line += (
            f"\nwarning: the penalty was at its clamp (--gp-upper-limit "
            f"{row['gp_upper_limit']:g}) on {row['clamp_fraction']:.0%} of this epoch's "
            "penalised steps, where it passes no gradient: the run is close to SimCLR. "
            "Raise --gp-upper-limit (or lower --lambda-gp) for the penalty to act"
        )
    return line


def get_args_parser() -> argparse.ArgumentParser:
    # The description's example command keeps its own line: argparse would refill it into prose.
    p = argparse.ArgumentParser(description=__doc__, formatter_class=DescriptionKeptHelpFormatter)
    p.add_argument("metrics", nargs="+", type=Path, help="<filename>.metrics.jsonl files")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="PNG to write (default: curves.png beside the first metrics file)",
    )
    p.add_argument("--labels", nargs="+", default=None, help="one legend label per file")
    return p


def main(args: argparse.Namespace) -> Path:
    if args.labels is not None and len(args.labels) != len(args.metrics):
        raise UsageError(
            f"--labels gives {len(args.labels)} names for {len(args.metrics)} files; give one each"
        )
    output = args.output or args.metrics[0].parent / "curves.png"
    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: write a .png file")
    labels = args.labels or [run_label(path) for path in args.metrics]
    runs = {}
    for label, path in zip(labels, args.metrics, strict=True):
        rows = read_metrics(path)
        if not rows:
            raise UsageError(f"{path} has no epochs yet; plot it after the first epoch ends")
        runs[label] = rows
    if len(runs) < len(labels):
        raise UsageError("two runs have the same label; name them with --labels")
    plot_runs(runs, output)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    run_cli(main, get_args_parser())
