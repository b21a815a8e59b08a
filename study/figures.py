"""The study's figures (docs/figures/), drawn from its records by `python3 -m study figures`.

Every seed as points and the mean over seeds as a line, each method in its one colour
(`study.protocol`) in every figure, axes labelled with their units: the training curves; the
conditional variance against epochs for each λ (the paper's figure, by its definition and by the
authors' computation; the sweep's one seed, drawn as such); the probe against the number of
averaged copies M; the robustness curves; Spirograph's per-target MSE (categories as points, the
mean as a bar, nothing joined); InvCLR − SimCLR against training length; and the conditional
variance, the spread across images and their ratio per method (the bunching explanation's
measures, the relative penalty's included).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # not pyplot: no global figure state, no display needed

from study.claims import authors, score, variance
from study.half import Half
from study.protocol import SWEEP_SEED, described
from study.tables import metric, sweep_runs
from utils.checkpoint import save_figure

METHODS = ("simclr", "invclr", "random")  # the paper's comparison, against the random network
NAMES = {"spirograph": "Spirograph", "cifar10": "CIFAR-10"}


def metric_label(half: Half) -> str:
    return metric(half) + (" (lower is better)" if half.lower_is_better else "")


# The λ sweep's weights other than SimCLR's and InvCLR's: colours no method has.
SWEEP_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan")
SHIFT_AXES = {  # what each shift's amount is, in its units
    "shift": "colour-jitter strength s (brightness, contrast, saturation 0.8 s; hue 0.2 s)",
    "shift_background_mean": "background colour moved by (RGB intensity, 0-1 scale)",
    "shift_background_range": "background colour range widened each side by (RGB intensity, 0-1)",
    "shift_h_mean": "h moved by (h's units; training range 0.5-2.5)",
    "shift_h_range": "h's range widened each side by (h's units; training range 0.5-2.5)",
}


def seeds_and_mean(
    ax,
    xs: list[float],
    per_seed: list[list[float]],
    colour: str,
    label: str,
    joined: bool = True,
    geometric: bool = False,
) -> None:
    """Each seed's values as points at ``xs``, their mean as a line (``joined``) or, on a
    categorical axis, as a bar at each x; on a log axis the mean is the geometric one
    (``geometric``), as the invariance table's is."""
    for values in per_seed:
        ax.plot(xs[: len(values)], values, "o", color=colour, alpha=0.35, markersize=3)
    columns = [[v[i] for v in per_seed if len(v) > i] for i in range(len(xs))]
    mean = statistics.geometric_mean if geometric else statistics.fmean
    means = [mean(c) for c in columns if c]
    style = {"linestyle": "-"} if joined else {"linestyle": "none", "marker": "_", "markersize": 14}
    ax.plot(xs[: len(means)], means, color=colour, label=f"{label} ({len(per_seed)} seeds)",
            **style)  # fmt: skip


def save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def lambda_sweep(half: Half, folder: Path) -> Path | None:
    runs = {f"λ = {weight}": method for weight, method in sweep_runs(half)}  # by weight
    epochs = half.protocol.checkpoints
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, (title, measure) in zip(
        axes,
        (("the paper's definition", variance("theta")), ("the authors' computation", authors)),
        strict=True,
    ):
        others = iter(SWEEP_COLOURS)
        for label, method in runs.items():
            points = [(e, half.evaluations.get((method, SWEEP_SEED, e))) for e in epochs]
            points = [(e, measure(r)) for e, r in points if r is not None]
            if points:
                drawn = True
                colour = described(method).colour or next(others)
                ax.plot(*zip(*points, strict=True), "o-", label=label, color=colour)
        ax.set(
            title=f"conditional variance (θ), {title}",
            xlabel="training epochs",
            ylabel="variance of ĥ under θ (trace, unit rows)",
            yscale="log",
        )
        ax.legend(fontsize=7)
    fig.suptitle(f"{NAMES[half.dataset]}: the λ sweep, seed {SWEEP_SEED} alone (one run per λ)")
    return save(fig, folder / f"lambda-sweep-{half.dataset}.png") if drawn else None


def by_method(
    half: Half,
    values: Callable[[dict[str, Any]], list[float]],
    xs: list[float],
    ax,
    joined: bool = True,
) -> bool:
    """Each method's seeds and mean; on a categorical axis (not ``joined``) each method a
    little to the side of the others, so that no two hide each other."""
    drawn = False
    for index, method in enumerate(METHODS):
        per_seed = []
        for result in half.results(method).values():
            try:
                per_seed.append(values(result))
            except (KeyError, TypeError):
                continue  # not in this seed's record (the suite's measures: seeds 0-2)
        if per_seed:
            drawn = True
            at = xs if joined else [x + 0.2 * (index - 1) for x in xs]
            seeds_and_mean(ax, at, per_seed, described(method).colour, described(method).label,
                           joined)  # fmt: skip
    return drawn


def averaging(half: Half, folder: Path) -> Path | None:
    suite = next((r for r in half.results("invclr").values() if "averaging_curve" in r), None)
    if suite is None:
        return None
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    points = [p for p in suite["averaging_curve"]["points"] if p["images"] == "subset"]
    passes = [p["passes"] for p in points]

    def curve(r: dict[str, Any]) -> list[float]:
        subset = [p for p in r["averaging_curve"]["points"] if p["images"] == "subset"]
        return [score(half)(p) for p in sorted(subset, key=lambda p: p["passes"])]

    by_method(half, curve, passes, ax)
    ax.set(
        xscale="log",
        xlabel="augmented copies averaged per image (M)",
        ylabel=metric_label(half),
        title=f"{NAMES[half.dataset]}: feature averaging "
        f"({suite['averaging_curve']['subset']['train']:,} images)",
    )
    ax.legend(fontsize=7)
    return save(fig, folder / f"averaging-{half.dataset}.png")


def robustness(half: Half, folder: Path) -> Path | None:
    suite = next((r for r in half.results("invclr").values() if "averaging_curve" in r), None)
    if suite is None:
        return None
    kinds = sorted(k for k in suite if k.startswith("shift"))
    fig = Figure(figsize=(4.2 * len(kinds), 3.6))
    for ax, kind in zip(fig.subplots(1, len(kinds), squeeze=False)[0], kinds, strict=True):
        amounts = [p["amount"] for p in suite[kind]]
        by_method(half, lambda r, k=kind: [score(half)(p) for p in r[k]], amounts, ax)
        ax.set(xlabel=SHIFT_AXES.get(kind, kind), ylabel=metric_label(half))
        ax.xaxis.label.set_fontsize(7)
        ax.legend(fontsize=7)
    fig.suptitle(f"{NAMES[half.dataset]}: the probe on shifted test images")
    return save(fig, folder / f"robustness-{half.dataset}.png")


def per_target(half: Half, folder: Path) -> Path | None:
    if half.dataset != "spirograph":
        return None
    from augmentation.spirograph import DATA_PARAMS

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    targets = list(range(len(DATA_PARAMS)))
    drawn = by_method(half, lambda r: [r[f"mse_{name}"] for name in DATA_PARAMS], targets, ax,
                      joined=False)  # fmt: skip
    ax.set(
        xticks=targets,
        xticklabels=DATA_PARAMS,
        yscale="log",
        xlabel="regression target (a data parameter of the drawing)",
        ylabel="test MSE (lower is better)",
        title="Spirograph: the probe's MSE on each target (final checkpoints)",
    )
    ax.legend(fontsize=7)
    return save(fig, folder / "per-target-spirograph.png") if drawn else None


def length(half: Half, folder: Path) -> Path | None:
    epochs = half.protocol.checkpoints
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, (title, measure) in zip(
        axes,
        ((metric_label(half), score(half)), ("conditional variance (θ)", variance("theta"))),
        strict=True,
    ):
        per_seed = []
        for seed in sorted({s for (m, s, _) in half.evaluations if m == "invclr"}):
            row = []
            for epoch in epochs:
                a = half.evaluations.get(("invclr", seed, epoch))
                b = half.evaluations.get(("simclr", seed, epoch))
                if a is None or b is None:
                    break
                row.append(measure(a) - measure(b))
            if row:
                per_seed.append(row)
        if per_seed:
            drawn = True
            seeds_and_mean(ax, epochs, per_seed, described("invclr").colour, "InvCLR − SimCLR")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(xlabel="training epochs", ylabel=f"InvCLR − SimCLR, {title}")
        ax.legend(fontsize=7)
    fig.suptitle(f"{NAMES[half.dataset]}: the difference against training length (seeds as points)")
    return save(fig, folder / f"length-{half.dataset}.png") if drawn else None


def bunching(half: Half, folder: Path) -> Path | None:
    """The three measures the bunching explanation turns on, per method on a categorical axis:
    the conditional variance under θ, the spread across images and their ratio (the relative
    family's lines R0-R3 read these on the final checkpoints)."""
    methods = [m for m in ("simclr", "invclr", "relative", "random") if half.results(m)]
    if not {"simclr", "invclr"} <= set(methods):
        return None
    fig = Figure(figsize=(11, 4))
    panels = (("conditional_variance", "conditional variance of ĥ under θ"),
              ("across", "spread of ĥ across images (trace)"),
              ("ratio", "ratio: the trace under θ over the spread"))  # fmt: skip
    for ax, (field, label) in zip(fig.subplots(1, 3), panels, strict=True):
        for x, method in enumerate(methods):
            values = [[variance("theta", field)(r)] for r in half.results(method).values()]
            seeds_and_mean(ax, [x], values, described(method).colour, described(method).label,
                           joined=False, geometric=True)  # fmt: skip
        ax.set(xticks=range(len(methods)), xticklabels=[described(m).label for m in methods],
               yscale="log", ylabel=label)  # fmt: skip
        ax.tick_params(axis="x", labelsize=7, labelrotation=15)
    axes = fig.axes
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{NAMES[half.dataset]}: the measures of invariance, final checkpoints "
                 "(seeds as points, their geometric mean as a bar)")  # fmt: skip
    return save(fig, folder / f"bunching-{half.dataset}.png")


def curves(half: Half, folder: Path) -> Path | None:
    """The training curves of every seed of each main method, from the training records'
    epochs: the NT-Xent loss and the penalty (SimCLR has none)."""
    methods = [m for m in half.main_methods if any(k[0] == m for k in half.trainings)]
    if not methods:
        return None
    fig = Figure(figsize=(10, 4))
    panels = (("contrastive_loss", "NT-Xent loss (mean over the epoch)", "linear"),
              ("penalty", "gradient penalty (mean over penalised steps)", "log"))  # fmt: skip
    for ax, (key, label, scale) in zip(fig.subplots(1, 2), panels, strict=True):
        for method in methods:
            runs = [t["epochs"] for (m, _), t in sorted(half.trainings.items()) if m == method]
            per_seed = [[row[key] for row in rows] for rows in runs]
            if key == "penalty" and not any(v for values in per_seed for v in values):
                continue  # SimCLR records its penalty as 0
            epochs = list(range(1, max(len(v) for v in per_seed) + 1))
            seeds_and_mean(ax, epochs, per_seed, described(method).colour,
                           described(method).label)  # fmt: skip
        ax.set(xlabel="training epoch", ylabel=label, yscale=scale)
        ax.legend(fontsize=7)
    fig.suptitle(f"{NAMES[half.dataset]}: training, every seed")
    return save(fig, folder / f"curves-{half.dataset}.png")


def draw(halves: list[Half], folder: Path) -> list[Path]:
    """Every figure the records have the numbers for; returns the files written."""
    written = []
    for half in halves:
        for figure in (curves, lambda_sweep, averaging, robustness, per_target, length, bunching):
            if (path := figure(half, folder)) is not None:
                written.append(path)
    return written
