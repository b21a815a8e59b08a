"""What the gradient penalty lowers, against what the invariance measure reads (Spirograph).

    python3 -m study.first_order results/spirograph-simclr-seed0.pth \\
        results/spirograph-invclr-seed0.pth --images 500

For each checkpoint, on ``--images`` test images and ``--draws`` fresh transformation draws θ′
per image (the encoder in eval mode, as the evaluation scripts run it), with ĥ the normalised
representation and θ the parameters of one reference draw:

- ``first_order``: E‖J(θ)(θ′ − θ)‖², J the Jacobian of ĥ with respect to θ; the quantity whose
  Rademacher estimate the penalty is (spec section 5), computed exactly here by forward-mode
  differentiation along each θ′ − θ;
- ``actual``: E‖ĥ(θ′) − ĥ(θ)‖², the change the first-order term stands for;
- ``within`` and ``across``: the invariance measure's numerator (variance across draws) and
  denominator (variance across images), and the ratio ``invariance`` (`evaluation.invariance`, over
  the same draws θ′);
- ``concentration``: ‖mean over images of ĥ‖², which for unit vectors is 1 − ``across`` (up to
  the unbiased correction): how tightly the representations sit around one direction;
- ``first_order / across`` and ``actual / across``: the same sensitivities in units of the spread
  between images, which a uniform shrinking of every representation towards one direction does
  not change.

``--pixels`` adds the same quantities for the images themselves, rendered as training renders them
(each row divided by its maximum) and with the image's maximum instead: how far the renderer alone
is from its first-order expansion.

A table is printed and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from augmentation.spirograph import render_spirograph
from augmentation.views import SpirographViews
from datasets.sources import load_dataset
from evaluation.invariance import invariance_measure
from models.pretrained import load_encoder
from utils.checkpoint import resolve_checkpoint
from utils.cli import UsageError, int_at_least, run_cli, seed_value


def normalised(
    encoder: nn.Module, data_params: Tensor, theta: Tensor, global_max: bool = False
) -> Tensor:
    images = render_spirograph(data_params, theta, global_max=global_max)
    return F.normalize(encoder(images), dim=1)


def study(
    encoder: nn.Module,
    data_params: Tensor,
    draws: int,
    generator: torch.Generator,
    global_max: bool = False,
) -> dict[str, float]:
    """The quantities of the module docstring for one encoder; ``global_max`` renders with the
    image's maximum instead of each row's (spec section 2)."""
    views = SpirographViews()
    n = data_params.shape[0]
    theta = views.sample_nuisance(n, device="cpu", generator=generator)
    fresh = [views.sample_nuisance(n, device="cpu", generator=generator) for _ in range(draws)]

    def represent(t: Tensor) -> Tensor:
        return normalised(encoder, data_params, t, global_max)

    with torch.no_grad():
        reference = represent(theta)
    first_order = actual = 0.0
    for drawn in fresh:
        # J(θ)(θ′ − θ) for every image at once: the renderer and an eval-mode encoder treat the
        # images independently, so one Jacobian-vector product along the stacked steps suffices.
        _, directional = torch.func.jvp(represent, (theta,), (drawn - theta,))
        with torch.no_grad():
            moved = represent(drawn)
        first_order += directional.double().pow(2).sum(1).mean().item() / draws
        actual += (moved - reference).double().pow(2).sum(1).mean().item() / draws
    measured = invariance_measure(
        encoder,
        [data_params],
        lambda p: [render_spirograph(p, drawn, global_max=global_max) for drawn in fresh],
        torch.device("cpu"),
    )
    across = measured["across"]
    return {
        "first_order": first_order,
        "actual": actual,
        "first_order_over_actual": first_order / actual if actual else math.inf,
        "within": measured["within"],
        "across": across,
        "invariance": measured["invariance"],
        # For unit vectors the unbiased variance across n images is n/(n − 1)·(1 − ‖mean‖²).
        "concentration": 1 - across * (n - 1) / n,
        # A constant encoder has no spread at all: everything is infinitely large against it.
        "first_order_over_across": first_order / across if across else math.inf,
        "actual_over_across": actual / across if across else math.inf,
    }


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="Spirograph checkpoints (paths)")
    p.add_argument("--images", type=int_at_least(2), default=500, help="test images (default: 500)")
    p.add_argument(
        "--draws", type=int_at_least(2), default=10, help="draws θ′ per image (default: 10)"
    )
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the draws (default: 0)")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="also study the first checkpoint's network at random initialisation",
    )
    p.add_argument(
        "--pixels",
        action="store_true",
        help="also study the images themselves (flattened pixels as the representation) of the "
        "last checkpoint's test images, as rendered (each row divided by its maximum) and with "
        "the image's maximum instead",
    )
    return p


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    runs = [(name, False) for name in args.checkpoints]
    if args.random_init:
        runs.append((args.checkpoints[0], True))
    for name, random_init in runs:
        path = resolve_checkpoint(name, ".")
        encoder, run, epochs = load_encoder(path, torch.device("cpu"), random_init=random_init)
        if run["dataset"] != "spirograph":
            raise UsageError(f"{path} was trained on {run['dataset']}; this study is Spirograph's")
        test = load_dataset("spirograph", proportion=run.get("proportion", 1.0)).probe_test
        params = test.inputs[: args.images]
        label = "random init" if random_init else f"{path.stem} ({epochs} epochs)"
        generator = torch.Generator().manual_seed(args.seed)
        rows[label] = study(encoder, params, args.draws, generator)
    if args.pixels:
        for global_max in (False, True):
            label = "pixels, " + ("global maximum" if global_max else "row-wise maximum")
            generator = torch.Generator().manual_seed(args.seed)
            rows[label] = study(nn.Flatten(), params, args.draws, generator, global_max)
    keys = list(next(iter(rows.values())))
    width = max(len(label) for label in rows)
    print(f"{'':{width}}" + "".join(f"{key[:22]:>24}" for key in keys))
    for label, row in rows.items():
        print(f"{label:{width}}" + "".join(f"{row[key]:24.4g}" for key in keys))
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    run_cli(main, get_args_parser())
