"""Evaluate a checkpoint with a linear model on frozen representations (spec section 7).

Shared by `lbfgs_linear_clf.py` and `lbfgs_linear_clf_spirograph.py`, which only add their task's
flags. The dataset, architecture and stem come from the checkpoint; the encoder loads strictly.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from augmentation.views import NaturalViews, SpirographViews
from datasets.imagenet import ImageFolderCrops
from datasets.natural import Labelled
from datasets.sources import DATASETS, DatasetBundle, load_dataset
from datasets.spirograph import DATA_PARAMS
from models import ResNetEncoder
from utils.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from utils.cli import (
    DefaultsHelpFormatter,
    UsageError,
    add_runtime_args,
    float_at_least,
    int_at_least,
    proportion,
    resolve_device,
    seed_value,
)
from utils.invariance import invariance_measure
from utils.probe import (
    MAX_ITERATIONS,
    TOLERANCE,
    LinearFit,
    encode,
    evaluate_linear,
    fit_linear,
    gradient_norm,
)

REG_GRID = [10.0**k for k in range(-9, 0)]
# Spec section 7 gives 1e-5; the paper's Spirograph results used 1e-8, which the regression
# probe therefore defaults to (in the evaluation script and in training's --test-freq probe).
DEFAULT_REG_WEIGHT = {"classification": 1e-5, "regression": 1e-8}
HELD_OUT = 0.1
# The paper's ImageNet linear protocol (`--solver sgd`): 90 epochs from a rate of 0.1.
SGD_EPOCHS, SGD_LR = 90, 0.1


def reg_weight(text: str) -> float | str:
    """A non-negative number, or ``auto`` for a held-out search over a log grid."""
    return text if text == "auto" else float_at_least(0.0)(text)


def eval_args_parser(description: str, default_reg: float) -> argparse.ArgumentParser:
    """The flags both evaluation scripts share."""
    p = argparse.ArgumentParser(description=description, formatter_class=DefaultsHelpFormatter)
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
        help="fraction of the labelled training set used, stratified by class; Spirograph: "
        "of both its splits (default: the training run's --proportion, so the numbers match "
        "its in-training probe)",
    )
    p.add_argument(
        "--untransformed",
        action="store_true",
        help="encode plain images, one pass (default: one augmented pass, as the "
        "authors' evaluation)",
    )
    p.add_argument(
        "--num-passes",
        type=int_at_least(1),
        default=1,
        help="feature averaging: each representation is the mean over this many "
        "independently augmented copies",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="evaluate the checkpoint's architecture at random initialisation "
        "(seeded by --seed) instead of its weights: a baseline",
    )
    p.add_argument(
        "--raw-pixels",
        action="store_true",
        help="fit the probe on the flattened, normalised pixels instead of representations (a "
        "baseline; the checkpoint only says which dataset)",
    )
    p.add_argument(
        "--invariance",
        nargs="?",
        type=int_at_least(2),
        const=10,
        default=None,
        metavar="K",
        help="also measure invariance on the test set: the variance of the normalised "
        "representation across K fresh draws of the transformation the penalty targets (colour "
        "distortion after one crop and flip; Spirograph's transformation parameters), over its "
        "variance across images; 0 is fully invariant (K = 10 when given without a value)",
    )
    p.add_argument(
        "--invariance-images",
        type=int_at_least(2),
        default=1000,
        metavar="N",
        help="test images the invariance measure uses (a seeded random subset; all when fewer)",
    )
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=256, help="images per encoding batch"
    )
    add_runtime_args(p)
    p.add_argument(
        "--seed",
        type=seed_value,
        default=None,
        help="seed of the augmentation draws, the labelled subset and --random-init (default: "
        "the training run's --seed, as its in-training probe)",
    )
    return p


def load_encoder(
    path: Path, device: torch.device, *, random_init: bool = False, seed: int | None = None
) -> tuple[nn.Module, dict[str, Any], int]:
    """The checkpoint's encoder (loaded strictly) in eval mode, the training arguments and the
    number of epochs it was trained for. ``seed`` (default: the run's) seeds ``random_init``."""
    state = load_checkpoint(path)
    run = state.get("args")
    if not isinstance(run, dict) or run.get("dataset") not in DATASETS or "arch" not in run:
        raise CheckpointError(f"{path} lacks valid training arguments (dataset, arch)")
    torch.manual_seed(seed if seed is not None else run.get("seed", 0))
    try:
        # Checkpoints from before --width existed hold the full-width network.
        encoder = ResNetEncoder(run["arch"], DATASETS[run["dataset"]][0], run.get("width", 1.0))
        if not random_init:
            encoder.load_state_dict(state["encoder"], strict=True)
    except (KeyError, ValueError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:300]
        raise CheckpointError(
            f"{path}: encoder does not load as {run['arch']} ({reason})"
        ) from None
    return encoder.to(device).eval(), run, len(state.get("results", []))


def eval_views(data: DatasetBundle, run: dict[str, Any]) -> NaturalViews | SpirographViews:
    """The training augmentation without blur (spec section 7: crop, flip, colour)."""
    if data.name == "spirograph":
        return SpirographViews()
    return NaturalViews(
        data.name,
        data.image_size,
        run.get("colour_strength", 0.5),
        blur=False,
        crop=data.name != "imagenet",
    )


def input_batches(
    split: Labelled | torch.utils.data.Dataset, batch_size: int, num_workers: int
) -> Iterator[Tensor]:
    if isinstance(split, Labelled):
        yield from split.inputs.split(batch_size)
    else:
        loader = torch.utils.data.DataLoader(split, batch_size=batch_size, num_workers=num_workers)
        for inputs, _ in loader:
            yield inputs


def split_targets(split: Labelled | torch.utils.data.Dataset) -> Tensor:
    return split.targets if isinstance(split, Labelled) else torch.as_tensor(split.targets)


def representations(
    encoder: nn.Module,
    split,
    views,
    *,
    untransformed: bool,
    num_passes: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    generator: torch.Generator,
) -> Tensor:
    """(N, d) representations: of plain images, or averaged over ``num_passes`` augmented copies
    (each pass an independent draw of every random choice)."""
    if untransformed:
        return encode(encoder, input_batches(split, batch_size, num_workers), views.plain, device)
    to_images = lambda x: views.augment(x, generator=generator)[0]  # noqa: E731
    total = None
    for _ in range(num_passes):
        features = encode(encoder, input_batches(split, batch_size, num_workers), to_images, device)
        total = features if total is None else total + features
    return total / num_passes


def measure_invariance(
    encoder: nn.Module,
    split,
    views: NaturalViews | SpirographViews,
    num_draws: int,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    generator: torch.Generator,
) -> dict[str, float]:
    """`utils.invariance` over ``split`` with the draws of the nuisance the penalty
    differentiates: colour distortion (crop and flip drawn once per image, then fixed) or
    Spirograph's transformation parameters."""
    if isinstance(views, SpirographViews):

        def draws(params: Tensor) -> list[Tensor]:
            return [views.augment(params, generator=generator)[0] for _ in range(num_draws)]
    else:

        def draws(images: Tensor) -> list[Tensor]:
            cropped = views.crop_flip(images, generator=generator)
            return [views.distort(cropped, generator=generator)[0] for _ in range(num_draws)]

    return invariance_measure(encoder, input_batches(split, batch_size, num_workers), draws, device)


def held_out_split(n: int, seed: int) -> tuple[Tensor, Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = max(1, int(n * HELD_OUT))
    return order[cut:], order[:cut]


def choose_reg_weight(
    features: Tensor,
    targets: Tensor,
    num_outputs: int,
    task: str,
    seed: int,
    max_iter: int = MAX_ITERATIONS,
) -> tuple[float, bool]:
    """The grid weight with the best held-out accuracy (ties: lower loss) or lowest MSE, and
    whether every fit of the search reached its tolerance."""
    fit_idx, val_idx = held_out_split(features.shape[0], seed)
    scores, all_converged = [], True
    print("reg-weight search on a held-out 10% of the labelled training set:")
    for weight in REG_GRID:
        fit = fit_linear(
            features[fit_idx],
            targets[fit_idx],
            num_outputs,
            task=task,
            reg_weight=weight,
            max_iter=max_iter,
        )
        all_converged &= fit.converged
        result = evaluate_linear(fit, features[val_idx], targets[val_idx], task)
        note = "" if fit.converged else f"  (not converged: gradient norm {fit.grad_norm:.1e})"
        if task == "classification":
            scores.append((-result["accuracy"], result["loss"]))
            print(
                f"  {weight:8.0e}  accuracy {result['accuracy']:6.2f}%  loss {result['loss']:.4f}"
                + note
            )
        else:
            scores.append((result["mse"], 0.0))
            print(f"  {weight:8.0e}  mse {result['mse']:.6g}" + note)
    best = REG_GRID[min(range(len(REG_GRID)), key=scores.__getitem__)]
    print(f"chose reg-weight {best:.0e}")
    return best, all_converged


def linear_probe(
    encoder: nn.Module,
    data: DatasetBundle,
    views: NaturalViews | SpirographViews,
    *,
    reg_weight: float | str,
    untransformed: bool,
    num_passes: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    generator: torch.Generator,
    seed: int = 0,
    max_iter: int = MAX_ITERATIONS,
    verbose: bool = False,
) -> tuple[LinearFit, dict[str, Any], float]:
    """Spec section 7 with L-BFGS: encode the labelled training and test sets, fit on the first,
    score on the second. Used by the evaluation scripts and by training's ``--test-freq`` probe.

    Returns the fit, the test result of ``evaluate_linear`` (with ``reg_search_converged`` when
    ``reg_weight`` is ``"auto"``) and the regularisation weight used (``"auto"`` resolved)."""
    start = time.perf_counter()
    common = dict(
        untransformed=untransformed,
        num_passes=num_passes,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        generator=generator,
    )
    train_x = representations(encoder, data.probe_train, views, **common)
    train_y = split_targets(data.probe_train).to(device)
    test_x = representations(encoder, data.probe_test, views, **common)
    test_y = split_targets(data.probe_test).to(device)
    if verbose:
        mode = "plain images" if untransformed else f"{num_passes} augmented pass(es)"
        print(
            f"encoded {train_x.shape[0]} training and {test_x.shape[0]} test images "
            f"({mode}) in {time.perf_counter() - start:.1f} s"
        )
    search = {}
    if reg_weight == "auto":
        reg_weight, search["reg_search_converged"] = choose_reg_weight(
            train_x, train_y, data.num_outputs, data.task, seed, max_iter
        )
    fit = fit_linear(
        train_x, train_y, data.num_outputs, task=data.task, reg_weight=reg_weight, max_iter=max_iter
    )
    if verbose:
        how = "closed form" if data.task == "regression" else f"L-BFGS, {fit.iterations} iterations"
        print(
            f"fit ({how}): training objective {fit.train_loss:.6g}, gradient norm "
            f"{fit.grad_norm:.2e}"
            + (
                ""
                if fit.converged
                else f" -- above the tolerance {TOLERANCE:g}: NOT CONVERGED, so the numbers below "
                "are not the objective's optimum (a larger --reg-weight conditions it better)"
            )
        )
    return fit, {**evaluate_linear(fit, test_x, test_y, data.task), **search}, reg_weight


def fit_sgd(
    encoder: nn.Module,
    views: NaturalViews,
    data: DatasetBundle,
    args: argparse.Namespace,
    device: torch.device,
    generator: torch.Generator,
) -> LinearFit:
    """The paper's ImageNet protocol: a linear layer trained by SGD on frozen representations of
    randomly cropped and flipped images (no colour distortion), cosine-annealed over --epochs."""
    linear = nn.Linear(encoder.representation_dim, data.num_outputs).to(device)
    epochs = args.epochs if args.epochs is not None else SGD_EPOCHS
    lr = args.lr if args.lr is not None else SGD_LR
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr, momentum=0.9)
    split = data.probe_train
    steps_per_epoch = math.ceil(len(split) / args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    targets_all = split_targets(split)
    loss = torch.zeros(())
    for epoch in range(epochs):
        if isinstance(split, ImageFolderCrops):
            split.epoch = epoch  # its crops are seeded by (seed, epoch, index): fresh ones
        if isinstance(split, Labelled):
            order = torch.randperm(len(split), generator=torch.Generator().manual_seed(epoch))
            batches = ((split.inputs[i], targets_all[i]) for i in order.split(args.batch_size))
        else:
            batches = torch.utils.data.DataLoader(
                split, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers
            )
        for inputs, targets in batches:
            with torch.no_grad():
                x = views.plain(views.crop_flip(inputs.to(device), generator=generator))
                h = encoder(x).float()
            targets = targets.to(device)
            loss = (
                F.cross_entropy(linear(h), targets) + args.reg_weight * linear.weight.pow(2).sum()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"SGD epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.4f}")
    grad_norm = gradient_norm(linear)
    # SGD runs its fixed schedule (the paper's protocol) rather than to a tolerance.
    return LinearFit(linear.eval(), loss.item(), grad_norm, epochs * steps_per_epoch, False)


def evaluate_checkpoint(args: argparse.Namespace, task: str) -> dict[str, Any]:
    """Run the evaluation of spec section 7 and print readable lines, then one JSON line."""
    if args.untransformed and args.num_passes > 1:
        raise UsageError("--untransformed encodes plain images once; drop --num-passes or it")
    device = resolve_device(args.device)
    path = resolve_checkpoint(args.load_from, args.checkpoint_dir)
    if args.random_init and args.raw_pixels:
        raise UsageError("--random-init and --raw-pixels are two different baselines; pick one")
    encoder, run, epochs = load_encoder(path, device, random_init=args.random_init, seed=args.seed)
    if args.raw_pixels:
        encoder = nn.Flatten().to(device)
    dataset = run["dataset"]
    if task == "classification" and dataset == "spirograph":
        raise UsageError(f"{path} was trained on spirograph; use lbfgs_linear_clf_spirograph.py")
    if task == "regression" and dataset != "spirograph":
        raise UsageError(f"{path} was trained on {dataset}; use lbfgs_linear_clf.py")
    solver = getattr(args, "solver", None) or ("sgd" if dataset == "imagenet" else "lbfgs")
    if dataset == "imagenet" and solver == "lbfgs":
        raise UsageError("ImageNet is too large for full-batch L-BFGS; use --solver sgd")
    if solver == "sgd" and args.raw_pixels:
        raise UsageError("--raw-pixels is for the L-BFGS probe (CIFAR, STL-10, Spirograph)")
    if solver == "sgd" and args.reg_weight == "auto":
        raise UsageError("--reg-weight auto is for the L-BFGS solver; give a number with SGD")
    if solver == "sgd" and (args.untransformed or args.num_passes > 1):
        raise UsageError(
            "--untransformed and --num-passes choose the representations L-BFGS is fitted on; "
            "SGD trains on a fresh crop and flip at every step, so drop them"
        )
    max_iter = getattr(args, "max_iter", None)
    if solver == "sgd" and max_iter is not None:
        raise UsageError("--max-iter caps the L-BFGS solver; SGD runs --epochs, so drop it")
    sgd_flags = [f"--{name}" for name in ("epochs", "lr") if getattr(args, name, None) is not None]
    if solver == "lbfgs" and sgd_flags:
        raise UsageError(
            f"{' and '.join(sgd_flags)} set the SGD solver; add --solver sgd or drop them"
        )
    seed = args.seed if args.seed is not None else run.get("seed", 0)
    if args.raw_pixels:
        weights = "raw pixels, no encoder"
    elif args.random_init:
        weights = "random initialisation"
    else:
        weights = f"{epochs} epoch{'' if epochs == 1 else 's'}"
    print(f"{path}: {run['arch']} on {dataset} ({weights}), device {device}")

    start = time.perf_counter()
    share = args.proportion if args.proportion is not None else run.get("proportion", 1.0)
    data = load_dataset(dataset, proportion=share, seed=seed)
    views = eval_views(data, run)
    generator = torch.Generator(device).manual_seed(seed)
    common = dict(
        untransformed=args.untransformed,
        num_passes=args.num_passes,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        generator=generator,
    )
    if solver == "lbfgs":
        fit, result, weight = linear_probe(
            encoder,
            data,
            views,
            reg_weight=args.reg_weight,
            seed=seed,
            max_iter=max_iter or MAX_ITERATIONS,
            verbose=True,
            **common,
        )
    else:
        weight = args.reg_weight
        fit = fit_sgd(encoder, views, data, args, device, generator)
        test_x = representations(
            encoder, data.probe_test, views, **{**common, "untransformed": True}
        )
        test_y = split_targets(data.probe_test).to(device)
        result = evaluate_linear(fit, test_x, test_y, data.task)
    summary = {
        "dataset": dataset,
        "arch": run["arch"],
        "width": run.get("width", 1.0),
        "checkpoint": str(path),
        "random_init": args.random_init,
        "raw_pixels": args.raw_pixels,
    }
    if data.task == "classification":
        print(f"test accuracy {result['accuracy']:.2f}%  test cross-entropy {result['loss']:.4f}")
        summary.update(accuracy=result["accuracy"], loss=result["loss"])
    else:
        per_target = dict(zip(DATA_PARAMS, result["mse_per_target"], strict=True))
        line = f"test MSE {result['mse']:.6f}"
        summary["mse"] = result["mse"]
        if getattr(args, "componentwise", False):
            line += "  (" + ", ".join(f"{k} {v:.6f}" for k, v in per_target.items()) + ")"
            summary.update({f"mse_{k}": v for k, v in per_target.items()})
        print(line)
    if args.invariance:
        test = data.probe_test
        if len(test) > args.invariance_images:
            order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
            keep = order[: args.invariance_images].sort().values
            test = test.subset(keep) if isinstance(test, Labelled) else test.select(keep.tolist())
        measured = measure_invariance(
            encoder,
            test,
            views,
            args.invariance,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=device,
            generator=torch.Generator(device).manual_seed(seed + 1),
        )
        print(
            f"invariance {measured['invariance']:.4f} (variance across {args.invariance} draws "
            f"{measured['within']:.4g} / across images {measured['across']:.4g})"
        )
        summary.update(
            invariance=measured["invariance"],
            invariance_within=measured["within"],
            invariance_across=measured["across"],
            invariance_draws=args.invariance,
            invariance_images=len(test),
        )
    summary.update(
        n_train=len(data.probe_train),
        n_test=len(data.probe_test),
        # SGD fits on a fresh crop at every step: neither choice applies to it.
        num_passes=None if solver == "sgd" else 1 if args.untransformed else args.num_passes,
        untransformed=None if solver == "sgd" else args.untransformed,
        reg_weight=weight,
        solver="closed form" if data.task == "regression" else solver,
        train_objective=fit.train_loss,
        grad_norm=fit.grad_norm,
        # The gradient-norm tolerance was met; SGD runs the paper's fixed schedule instead.
        converged=fit.converged if solver == "lbfgs" else None,
        **{k: v for k, v in result.items() if k == "reg_search_converged"},
        seconds=round(time.perf_counter() - start, 2),
    )
    print(json.dumps(summary))
    return summary
