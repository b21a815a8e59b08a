"""Linear classification on a checkpoint's frozen representations (spec section 7).

    python3 lbfgs_linear_clf.py --load-from output.pth [--num-passes 100]

Full-batch L-BFGS on the representations of the labelled training set, to the optimum of its
objective (evaluation/probe.py), on plain images (normalisation only) unless ``--num-passes M``
asks for the mean of M augmented copies; ImageNet (or ``--solver sgd``) trains the linear layer
with SGD on cropped and flipped images instead. The dataset, architecture and stem come from the
checkpoint; the encoder loads strictly. ``--knn`` adds the kNN accuracies on the same encoding
(``--knn-only``: them alone, no probe fitted; evaluation/knn.py). The last line printed is one
JSON object with the results.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

from augmentation.views import NaturalViews
from datasets.natural import Labelled
from datasets.sources import DatasetBundle
from evaluation.encoding import representations
from evaluation.flags import add_evaluation_args, add_knn_args, add_measure_args, check_knn_args
from evaluation.measures import wanted
from evaluation.probe import (
    DEFAULT_REG_WEIGHT,
    MAX_ITERATIONS,
    LinearFit,
    evaluate_linear,
    gradient_norm,
)
from evaluation.session import Evaluation
from utils.cli import (
    ArgFileParser,
    DefaultsHelpFormatter,
    UsageError,
    float_at_least,
    int_at_least,
    run_cli,
)
from utils.memory import out_of_memory
from utils.rng import epoch_generator

# The paper's ImageNet linear protocol (`--solver sgd`): 90 epochs from a rate of 0.1.
SGD_EPOCHS, SGD_LR = 90, 0.1


def get_args_parser() -> argparse.ArgumentParser:
    p = ArgFileParser(
        description="Linear classification of a checkpoint's representations.",
        formatter_class=DefaultsHelpFormatter,
    )
    add_evaluation_args(p, DEFAULT_REG_WEIGHT["classification"])
    add_measure_args(p, rendered=False)
    add_knn_args(p)
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
        help=f"L-BFGS solver only: iterations before a fit gives up and is reported as "
        f"not converged (default: {MAX_ITERATIONS}; well-conditioned probes stop at "
        "their tolerance long before)",
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


def fit_sgd(
    encoder: nn.Module,
    views: NaturalViews,
    data: DatasetBundle,
    args: argparse.Namespace,
    device: torch.device,
    seed: int,
) -> LinearFit:
    """The paper's ImageNet protocol: a linear layer trained by SGD on frozen representations of
    randomly cropped and flipped images (no colour distortion), cosine-annealed over --epochs.
    In-memory sets are visited in an order fixed by (``seed``, epoch), as pretraining's."""
    linear = nn.Linear(encoder.representation_dim, data.info.num_outputs).to(device)
    epochs = args.epochs if args.epochs is not None else SGD_EPOCHS
    lr = args.lr if args.lr is not None else SGD_LR
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr, momentum=0.9)
    split = data.probe_train
    steps_per_epoch = math.ceil(len(split) / args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    loss = torch.zeros(())
    for epoch in range(epochs):
        if isinstance(split, Labelled):
            order = torch.randperm(len(split), generator=epoch_generator(seed, epoch))
            batches = ((split.inputs[i], split.targets[i]) for i in order.split(args.batch_size))
        else:
            split.epoch = epoch  # crops seeded by (seed, epoch, index): fresh ones each epoch
            batches = torch.utils.data.DataLoader(
                split, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers
            )
        for inputs, targets in batches:
            with torch.no_grad():
                h = encoder(views.plain(views.crop_flip(inputs.to(device)))).float()
            loss = (
                F.cross_entropy(linear(h), targets.to(device))
                + args.reg_weight * linear.weight.pow(2).sum()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"SGD epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.4f}")
    # SGD runs its fixed schedule (the paper's protocol) rather than to a tolerance.
    steps = epochs * steps_per_epoch
    return LinearFit(linear.eval(), loss.item(), gradient_norm(linear), steps, False)


def probe_solver(args: argparse.Namespace, info) -> str | None:
    """The probe's solver (None: no probe, `--knn-only`), once the flags are checked against it."""
    if (args.knn or args.knn_only) and not info.full_batch_probe:
        if args.num_passes is not None or args.raw_pixels:
            raise UsageError(
                f"{info.name}'s kNN votes with the representations of centre crops; drop "
                "--num-passes and --raw-pixels"
            )
    if args.knn_only:
        return None
    solver = args.solver or ("lbfgs" if info.full_batch_probe else "sgd")
    if solver == "lbfgs" and not info.full_batch_probe:
        raise UsageError(f"{info.name} is too large for full-batch L-BFGS; use --solver sgd")
    if solver == "sgd":
        if args.raw_pixels:
            raise UsageError("--raw-pixels is for the L-BFGS probe (CIFAR, STL-10, Spirograph)")
        if args.reg_weight == "auto":
            raise UsageError("--reg-weight auto is for the L-BFGS solver; give a number with SGD")
        if args.untransformed or args.num_passes is not None:
            raise UsageError(
                "--untransformed and --num-passes choose the representations L-BFGS is fitted "
                "on; SGD trains on a fresh crop and flip at every step, so drop them"
            )
        if args.max_iter is not None:
            raise UsageError("--max-iter caps the L-BFGS solver; SGD runs --epochs, so drop it")
        if wanted(args, info):
            raise UsageError(
                "the measures beyond the probe reuse the full-batch L-BFGS probe's encoding; "
                "drop them with --solver sgd"
            )
    sgd_flags = [
        flag for flag, v in (("--epochs", args.epochs), ("--lr", args.lr)) if v is not None
    ]
    if solver == "lbfgs" and sgd_flags:
        raise UsageError(
            f"{' and '.join(sgd_flags)} set the SGD solver; add --solver sgd or drop them"
        )
    return solver


def main(args: argparse.Namespace) -> dict:
    evaluation = Evaluation(args, "classification")
    info = evaluation.info
    check_knn_args(args, wanted(args, info))
    solver = probe_solver(args, info)
    knn = args.knn or args.knn_only
    data, views = evaluation.load()
    encoder, device = evaluation.encoder, evaluation.device
    # L-BFGS and the kNN share one encoding; SGD's probe encodes fresh crops as it trains.
    encoded = evaluation.encode(data, views) if solver == "lbfgs" or knn else None
    fit, result, weight, scores = None, {}, None, {}
    if solver == "lbfgs":
        fit, result, weight = evaluation.probe(encoded)
    elif solver == "sgd":
        weight = args.reg_weight
        where = f"the SGD probe (batches of {args.batch_size} images on {device})"
        with out_of_memory(where, "lower --batch-size"):
            fit = fit_sgd(encoder, views, data, args, device, evaluation.seed)
            if encoded is None:
                test_x = representations(
                    encoder, data.probe_test, views, untransformed=True, num_passes=1,
                    batch_size=args.batch_size, num_workers=args.num_workers, device=device,
                )  # fmt: skip
            else:
                test_x = encoded.test_x  # centre crops, as the SGD protocol scores
        test_y = torch.as_tensor(data.probe_test.targets).to(device)
        result = evaluate_linear(fit, test_x, test_y, "classification")
    if fit is not None:
        print(f"test accuracy {result['accuracy']:.2f}%  test cross-entropy {result['loss']:.4f}")
        scores = dict(accuracy=result["accuracy"], loss=result["loss"])
    summary = evaluation.summary(data, **scores)
    if knn:
        summary["knn"] = evaluation.knn(encoded)
    if solver == "lbfgs":
        summary.update(evaluation.measures(data, encoded, fit, weight))
    return evaluation.finish(
        summary, fit, result, reg_weight=weight, solver=solver,
        # The gradient-norm tolerance was met; SGD runs the paper's fixed schedule instead.
        converged=fit.converged if solver == "lbfgs" else None, fitted_on_passes=solver == "lbfgs",
    )  # fmt: skip


if __name__ == "__main__":
    run_cli(main, get_args_parser())
