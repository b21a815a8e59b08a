"""Linear regression of Spirograph's four data parameters from a checkpoint (spec section 7).

    python3 lbfgs_linear_clf_spirograph.py --load-from output.pth --num-passes 30 --componentwise

The regression is solved exactly (closed-form ridge in float64; the script keeps the authors'
name, whose code used L-BFGS); the test MSE is averaged over (m, b, sigma, rfore), or given for
each with ``--componentwise``. Each image is encoded from one transformation draw seeded by the
run's seed, as the in-training probe, unless ``--num-passes M`` averages M draws. The last line
printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse

from augmentation.spirograph import DATA_PARAMS
from evaluation.flags import add_evaluation_args, add_measure_args
from evaluation.probe import DEFAULT_REG_WEIGHT
from evaluation.session import Evaluation
from utils.cli import ArgFileParser, DefaultsHelpFormatter, run_cli


def get_args_parser() -> argparse.ArgumentParser:
    p = ArgFileParser(
        description="Linear regression of Spirograph parameters from representations.",
        formatter_class=DefaultsHelpFormatter,
    )
    add_evaluation_args(p, DEFAULT_REG_WEIGHT["regression"])
    add_measure_args(p, rendered=True)
    p.add_argument(
        "--componentwise",
        action="store_true",
        help="also report the test MSE of each of m, b, sigma, rfore",
    )
    return p


def main(args: argparse.Namespace) -> dict:
    evaluation = Evaluation(args, "regression")
    data, views = evaluation.load()
    encoded = evaluation.encode(data, views)
    fit, result, weight = evaluation.probe(encoded)
    per_target = dict(zip(DATA_PARAMS, result["mse_per_target"], strict=True))
    line, fields = f"test MSE {result['mse']:.6f}", {"mse": result["mse"]}
    if args.componentwise:
        line += "  (" + ", ".join(f"{k} {v:.6f}" for k, v in per_target.items()) + ")"
        fields.update({f"mse_{k}": v for k, v in per_target.items()})
    print(line)
    summary = evaluation.summary(data, **fields)
    summary.update(evaluation.measures(data, encoded, fit, weight))
    return evaluation.finish(
        summary, fit, result,
        reg_weight=weight, solver="closed form", converged=fit.converged,
    )  # fmt: skip


if __name__ == "__main__":
    run_cli(main, get_args_parser())
