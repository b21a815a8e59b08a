"""The flags both evaluation scripts take (spec section 7): which checkpoint, which probe, which
baseline, and which of the measures of docs/evaluation.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.encoding import ENCODE_BATCH_SIZE
from evaluation.knn import MAJORITY_K, TEMPERATURE, WEIGHTED_K
from evaluation.measures import CURVE_PASSES, DEFAULT_FRACTIONS
from evaluation.shift import DEFAULT_STRENGTHS, SPIROGRAPH_SHIFTS
from utils.cli import (
    UsageError,
    add_runtime_args,
    float_at_least,
    given_flags,
    int_at_least,
    proportion,
    seed_value,
)


def reg_weight(text: str) -> float | str:
    """A non-negative number, or ``auto`` for a held-out search over a log grid."""
    return text if text == "auto" else float_at_least(0.0)(text)


def add_evaluation_args(p: argparse.ArgumentParser, default_reg: float) -> None:
    """The flags both evaluation scripts take: which checkpoint, which probe, which baseline."""
    p.add_argument(
        "--load-from",
        required=True,
        metavar="FILE",
        help="checkpoint: a path, or a name looked up in --checkpoint-dir",
    )
    p.add_argument("--checkpoint-dir", default="checkpoint", help="folder for bare names")
    p.add_argument(
        "--reg-weight",
        type=reg_weight,
        default=default_reg,
        help="weight of ||W||^2 in the objective; 'auto' picks it from a log grid by "
        "the score on a held-out 10%% of the labelled training set, then refits",
    )
    p.add_argument(
        "--proportion",
        type=proportion,
        default=None,
        help="fraction of the labelled training set used, stratified by class; "
        "Spirograph: of both its splits (default: the training run's --proportion, so "
        "the numbers match its in-training probe)",
    )
    p.add_argument(
        "--untransformed",
        action="store_true",
        help="encode plain images (Spirograph: every transformation parameter at the middle "
        "of its range)",
    )
    p.add_argument(
        "--num-passes",
        type=int_at_least(1),
        default=None,
        metavar="M",
        help="feature averaging: each representation is the mean over M independently "
        "augmented copies (crop, flip, colour distortion; Spirograph: M transformation draws); "
        "--num-passes 1 is one augmented copy (default: plain images, as the in-training "
        "probe; Spirograph, which has none, one transformation draw per image)",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="evaluate the checkpoint's architecture at random initialisation (seeded "
        "by --seed) instead of its weights: a baseline",
    )
    p.add_argument(
        "--raw-pixels",
        action="store_true",
        help="fit the probe on the flattened, normalised pixels instead of "
        "representations (a baseline; the checkpoint only says which dataset)",
    )
    p.add_argument(
        "--invariance-images",
        type=int_at_least(2),
        default=1000,
        metavar="N",
        help="test images the conditional variance and the authors' variance use (a seeded "
        "random subset; all when fewer)",
    )
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=ENCODE_BATCH_SIZE,
        help="images per encoding batch; on CUDA the augmentation draws depend on it, and the "
        "default is the in-training probe's",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the JSON summary (the last line printed) to FILE",
    )
    add_runtime_args(p)
    p.add_argument("--seed", type=seed_value, default=None,
                   help="seed of the augmentation draws, the labelled subset and --random-init "
                   "(default: the training run's --seed, as its in-training probe)")  # fmt: skip


def add_knn_args(p: argparse.ArgumentParser) -> None:
    """The kNN classifier's flags (evaluation/knn.py), for the classification script."""
    g = p.add_argument_group("kNN accuracy (docs/evaluation.md)")
    g.add_argument(
        "--knn",
        action="store_true",
        help="also score the test set by its nearest labelled training images (cosine "
        "similarity, on the probe's representations): a weighted vote and a majority vote",
    )
    g.add_argument(
        "--knn-only",
        action="store_true",
        help="--knn without the linear probe: its fit skipped (the measures, which reuse it, "
        "are refused beside it)",
    )
    g.add_argument(
        "--knn-k",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help=f"neighbours of the weighted vote (default: {WEIGHTED_K}; at most the labelled set)",
    )
    g.add_argument(
        "--knn-temperature",
        type=float_at_least(0.0, strict=True),
        default=None,
        metavar="T",
        help=f"the weighted vote's temperature: a neighbour of cosine similarity s weighs "
        f"exp(s / T) (default: {TEMPERATURE:g})",
    )
    g.add_argument(
        "--knn-majority-k",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help=f"neighbours of the majority vote, ties to the lowest class index (default: "
        f"{MAJORITY_K}; at most the labelled set)",
    )


def check_knn_args(args: argparse.Namespace, measures: bool) -> None:
    """--knn's settings need --knn; --knn-only skips the probe, so its flags and the measures
    (``measures``: some are asked for), which reuse its fit, are refused beside it."""
    settings = [
        flag for flag, value in (("--knn-k", args.knn_k), ("--knn-temperature",
        args.knn_temperature), ("--knn-majority-k", args.knn_majority_k)) if value is not None
    ]  # fmt: skip
    if settings and not (args.knn or args.knn_only):
        raise UsageError(f"{' and '.join(settings)} set the kNN classifier; add --knn or drop them")
    if not args.knn_only:
        return
    # --reg-weight has a default, so only a typed one is known (a namespace built in code: not).
    given = given_flags(args) or frozenset()
    probe = [
        "--" + key.replace("_", "-")
        for key in ("reg_weight", "solver", "max_iter", "epochs", "lr")
        if key in given or (key != "reg_weight" and getattr(args, key, None) is not None)
    ]
    if probe:
        raise UsageError(
            f"--knn-only skips the linear probe, which {' and '.join(probe)} set; drop one side"
        )
    if measures:
        raise UsageError(
            "--knn-only skips the linear probe, whose fit the measures beyond it reuse; use --knn "
            "to keep both, or drop the measures"
        )


def add_measure_args(p: argparse.ArgumentParser, rendered: bool) -> None:
    """The flags of the measures beyond the probe (docs/evaluation.md); ``rendered`` picks
    Spirograph's test-time shifts rather than the colour-strength one."""
    g = p.add_argument_group("measures beyond the probe (docs/evaluation.md)")
    g.add_argument(
        "--suite",
        action="store_true",
        help="every measure below at its defaults (flags given beside it keep their values)",
    )
    g.add_argument(
        "--conditional-variance",
        nargs="?",
        type=int_at_least(2),
        const=10,
        default=None,
        metavar="P",
        help="the paper's conditional variance on --invariance-images test images over P draws "
        "(P = 10 when given without a value), redrawing theta alone and the whole colour "
        "distortion, with the trace, the spread across images and their ratio",
    )
    g.add_argument(
        "--authors-variance",
        action="store_true",
        help="the authors' computation of it as they wrote it (batches of 100 images, 10 draws, "
        "repeated image-major and viewed as (draws, images)): what their figures plotted",
    )
    g.add_argument(
        "--averaging-curve",
        nargs="*",
        type=int_at_least(1),
        default=None,
        metavar="M",
        help="the probe on the mean of M augmented copies for each M, from one run of the "
        f"largest (given bare: {_words(CURVE_PASSES['spirograph'])} on Spirograph, "
        f"{_words(CURVE_PASSES['natural'])} otherwise)",
    )
    g.add_argument(
        "--curve-full-passes",
        type=int_at_least(0),
        default=10,
        metavar="K",
        help="passes encoded for every image; later ones only for --curve-subset images",
    )
    g.add_argument(
        "--curve-subset",
        type=int_at_least(2),
        default=1000,
        metavar="N",
        help="images per split (a seeded subset) that every pass of the curve is encoded for",
    )
    g.add_argument(
        "--nuisance",
        action="store_true",
        help="linear regression from the representation onto the transformation parameters: "
        "test MSE against predicting the mean",
    )
    g.add_argument(
        "--label-fractions",
        nargs="*",
        type=proportion,
        default=None,
        metavar="F",
        help="the probe on a stratified fraction F of the labelled training set, test set "
        f"unchanged (given bare: {_words(DEFAULT_FRACTIONS)})",
    )
    if not rendered:
        g.add_argument(
            "--shift",
            nargs="*",
            type=float_at_least(0.0),
            default=None,
            metavar="S",
            help="score the probe on test images with colour jitter of strength S applied to "
            f"every image (given bare: {_words(DEFAULT_STRENGTHS)}; training used 0.5)",
        )
        return
    for kind, default in SPIROGRAPH_SHIFTS.items():
        kind = kind.replace("_", "-")
        moved = kind.endswith("mean")
        kind_type = float if moved else float_at_least(0.0)
        how = "moved by X" if moved else "widened by X on each side"
        what = "the background colours' ranges" if kind.startswith("b") else "h's range"
        g.add_argument(
            f"--shift-{kind}",
            nargs="*",
            type=kind_type,
            default=None,
            metavar="X",
            help=f"score the probe on test images rendered with {what} {how}, cut to "
            f"colours in [0, 1] and h >= 0 (given bare: {_words(default)})",
        )


def _words(values) -> str:
    return " ".join(f"{v:g}" for v in values)
