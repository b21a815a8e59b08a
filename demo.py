"""The `make demo` run: InvCLR on Spirograph on the CPU in a few minutes, end to end.

Trains a quarter-width ResNet-18 (`--width 0.25`) with the gradient penalty on 5,000 generated
Spirograph images for three epochs, evaluates the checkpoint with
`lbfgs_linear_clf_spirograph.py`, evaluates the same network at random initialisation with the
same probe (same images, same transformation draws, same held-out choice of the weight), and
prints both test MSEs side by side with their ratio and the wall time. Each step is also printed
as the shell command that reproduces it.

This is a small run (234 steps), not the paper's 50 epochs on 100,000 images at full width: it
shows the pipeline learning end to end, not the published MSE. `--seed N` repeats it with
another seed of initialisation, data order and augmentation.
"""

from __future__ import annotations

import argparse
import shlex
import time

import invariance_by_gradient
import lbfgs_linear_clf_spirograph
from augmentation.spirograph import DATA_PARAMS
from utils.cli import DefaultsHelpFormatter, float_at_least, int_at_least, run_cli, seed_value


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    p.add_argument("--num-epochs", type=int_at_least(1), default=3, help="training epochs")
    p.add_argument("--base-lr", type=float_at_least(0.0), default=1.5, help="training's --base-lr")
    p.add_argument(
        "--lambda-gp", type=float_at_least(0.0), default=1e-2, help="training's --lambda-gp"
    )
    p.add_argument(
        "--seed", type=seed_value, default=0, help="seed of the training run and its evaluation"
    )
    p.add_argument("--filename", default="demo", help="checkpoint name")
    p.add_argument("--checkpoint-dir", default="checkpoint", help="where the checkpoint goes")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="where to run")
    return p


def training_argv(args: argparse.Namespace) -> list[str]:
    return [
        "--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25", "--proportion", "0.05",
        "--batch-size", "64", "--base-lr", str(args.base_lr), "--num-epochs", str(args.num_epochs),
        "--lambda-gp", str(args.lambda_gp), "--gp-upper-limit", "1000", "--test-freq", "0",
        "--save-freq", "100", "--filename", args.filename, "--overwrite",
        "--checkpoint-dir", args.checkpoint_dir, "--device", args.device, "--seed", str(args.seed),
    ]  # fmt: skip


def run_step(module, argv: list[str]):
    """Print the step as a shell command, then run it in this process."""
    print(f"\n$ python3 {module.__name__}.py {shlex.join(argv)}", flush=True)
    return module.main(module.get_args_parser().parse_args(argv))


def main(args: argparse.Namespace) -> dict[str, dict]:
    start = time.perf_counter()
    checkpoint = run_step(invariance_by_gradient, training_argv(args))
    evaluation = ["--load-from", str(checkpoint), "--device", args.device, "--componentwise"]
    evaluation += ["--reg-weight", "auto"]
    results = {
        "trained": run_step(lbfgs_linear_clf_spirograph, evaluation),
        "random init": run_step(lbfgs_linear_clf_spirograph, [*evaluation, "--random-init"]),
    }
    minutes, seconds = divmod(round(time.perf_counter() - start), 60)

    epochs = f"{args.num_epochs} epoch" + ("" if args.num_epochs == 1 else "s")
    print(
        f"\nInvCLR demo: ResNet-18 at width 0.25, {results['trained']['n_train']:,} Spirograph "
        f"training images, {epochs}, base-lr {args.base_lr:g}, lambda-gp {args.lambda_gp:g}, "
        f"seed {args.seed}; "
        f"linear probe test MSE on {results['trained']['n_test']:,} images (lower is better)"
    )
    print(f"{'':14}{'MSE':>10}" + "".join(f"{name:>10}" for name in DATA_PARAMS))
    for label, result in results.items():
        row = "".join(f"{result[f'mse_{name}']:10.4f}" for name in DATA_PARAMS)
        print(f"{label:14}{result['mse']:10.4f}{row}")
    ratio = results["trained"]["mse"] / results["random init"]["mse"]
    print(f"trained / random init MSE: {ratio:.2f}; wall time {minutes} min {seconds:02d} s")
    return results


if __name__ == "__main__":
    run_cli(main, get_args_parser())
