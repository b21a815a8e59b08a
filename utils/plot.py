"""Training curves from metrics files, several runs overlaid for an ablation.

    python3 -m utils.plot checkpoint/plain.metrics.jsonl checkpoint/gp.metrics.jsonl

writes checkpoint/curves.png, beside the first metrics file (-o elsewhere.png to choose). One panel
per quantity: contrastive loss, penalty (with its `--gp-upper-limit` as a dashed line),
the share of penalised steps at which the penalty sat at that clamp, total loss, learning rate,
and the in-training probe's accuracy / cross-entropy or MSE where the runs have them
(`--test-freq`). Each run is labelled with its file name, without `.metrics.jsonl`, unless
`--labels` names them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure  # not pyplot: no global figure state, no display needed

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
