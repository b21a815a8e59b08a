"""Linear classification on a checkpoint's frozen representations (spec section 7).

    python3 lbfgs_linear_clf.py --load-from output.pth [--num-passes 10 | --untransformed]

Full-batch L-BFGS on the representations of the labelled training set; ImageNet (or
``--solver sgd``) trains the linear layer with SGD on cropped and flipped images instead.
The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse

from utils.cli import float_at_least, int_at_least, run_cli
from utils.evaluation import (
    DEFAULT_REG_WEIGHT,
    MAX_ITERATIONS,
    SGD_EPOCHS,
    SGD_LR,
    eval_args_parser,
    evaluate_checkpoint,
)


def get_args_parser() -> argparse.ArgumentParser:
    p = eval_args_parser(
        "Linear classification of a checkpoint's representations.",
        DEFAULT_REG_WEIGHT["classification"],
    )
    p.add_argument(
        "--solver",
        choices=["lbfgs", "sgd"],
        default=None,
        help="lbfgs: full batch (default; not for ImageNet); sgd: the paper's ImageNet "
        "protocol (default for ImageNet)",
    )
    p.add_argument(
        "--max-iter",
        type=int_at_least(1),
        default=None,
        help=f"L-BFGS solver only: iterations before a fit gives up and is reported as not "
        f"converged (default: {MAX_ITERATIONS}; well-conditioned probes stop at their tolerance "
        "long before)",
    )
    p.add_argument(
        "--epochs",
        type=int_at_least(1),
        default=None,
        help=f"SGD solver only: epochs (default: {SGD_EPOCHS})",
    )
    p.add_argument(
        "--lr",
        type=float_at_least(0.0, strict=True),
        default=None,
        help=f"SGD solver only: initial learning rate, cosine-annealed to 0 (default: {SGD_LR})",
    )
    return p


def main(args: argparse.Namespace) -> dict:
    return evaluate_checkpoint(args, task="classification")


if __name__ == "__main__":
    run_cli(main, get_args_parser())
