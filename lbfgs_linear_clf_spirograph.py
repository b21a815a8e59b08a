"""Linear regression of Spirograph's four data parameters from a checkpoint (spec section 7).

    python3 lbfgs_linear_clf_spirograph.py --load-from output.pth --num-passes 30 --componentwise

The regression is solved exactly (closed-form ridge in float64; the script keeps the authors'
name, whose code used L-BFGS); the test MSE is averaged over (m, b, sigma, rfore), or given for
each with ``--componentwise``. The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse

from utils.cli import run_cli
from utils.evaluation import DEFAULT_REG_WEIGHT, eval_args_parser, evaluate_checkpoint


def get_args_parser() -> argparse.ArgumentParser:
    p = eval_args_parser(
        "Linear regression of Spirograph parameters from representations.",
        DEFAULT_REG_WEIGHT["regression"],
    )
    p.add_argument(
        "--componentwise",
        action="store_true",
        help="also report the test MSE of each of m, b, sigma, rfore",
    )
    return p


def main(args: argparse.Namespace) -> dict:
    return evaluate_checkpoint(args, task="regression")


if __name__ == "__main__":
    run_cli(main, get_args_parser())
