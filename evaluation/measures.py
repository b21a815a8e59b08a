"""The paper's evaluations beyond the linear probe, each switched on by a flag of the evaluation
scripts and written to fields of the JSON summary (docs/evaluation.md): conditional variance and
the authors' computation of it, the test-time shift, the feature-averaging curve, nuisance
prediction and label fractions. Every measure draws from its own generator, seeded by the
evaluation's seed plus a fixed offset, and reuses the probe's encoding where it can."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import nn

from datasets.natural import stratified_indices
from datasets.sources import DatasetBundle, DatasetInfo
from evaluation.encoding import Encoded, encode, prefix_means
from evaluation.invariance import seeded_subset
from evaluation.nuisance import encode_with_nuisance, nuisance_names, nuisance_prediction
from evaluation.probe import LinearFit, evaluate_linear, fit_and_score
from evaluation.shift import (
    DEFAULT_STRENGTHS,
    SPIROGRAPH_SHIFTS,
    jitter_every_image,
    shifted_bounds,
    shifted_renderings,
)
from evaluation.variance import AUTHORS_BATCH, authors_variance, conditional_variance
from utils.cli import UsageError

# Offsets of each measure's seed from the evaluation's (+1 is --invariance's).
_SEEDS = {"variance": 2, "authors": 3, "shift": 4, "curve": 5, "nuisance": 6}
CURVE_PASSES = {"spirograph": (1, 5, 10, 30), "natural": (1, 5, 10, 30, 100)}
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
MEASURES = ("conditional_variance", "authors_variance", "averaging_curve", "nuisance")


def resolve_measure_args(args: argparse.Namespace, info: DatasetInfo) -> None:
    """Fill in the lists of flags given bare (and every measure under ``--suite``) and refuse
    a Spirograph shift that leaves no valid range, before anything is encoded."""
    suite = getattr(args, "suite", False)
    if suite and args.conditional_variance is None:
        args.conditional_variance = 10
    args.authors_variance = args.authors_variance or suite
    args.nuisance = args.nuisance or suite
    curve = CURVE_PASSES["spirograph" if info.rendered else "natural"]
    if args.averaging_curve == [] or (suite and args.averaging_curve is None):
        args.averaging_curve = list(curve)
    if args.label_fractions == [] or (suite and args.label_fractions is None):
        args.label_fractions = list(DEFAULT_FRACTIONS)
    for kind, default in shift_flags(info).items():
        if getattr(args, kind) == [] or (suite and getattr(args, kind) is None):
            setattr(args, kind, list(default))
        for amount in getattr(args, kind) or []:
            if info.rendered:
                try:
                    shifted_bounds(kind.removeprefix("shift_"), amount)
                except ValueError as error:
                    raise UsageError(str(error)) from None


def shift_flags(info: DatasetInfo) -> dict[str, tuple[float, ...]]:
    """The test-time shift flags of the dataset's script (as namespace names) and defaults."""
    if info.rendered:
        return {f"shift_{kind}": values for kind, values in SPIROGRAPH_SHIFTS.items()}
    return {"shift": DEFAULT_STRENGTHS}


def wanted(args: argparse.Namespace, info: DatasetInfo) -> bool:
    """Whether any measure of this module is asked for."""
    return any(getattr(args, name) for name in (*MEASURES, "label_fractions", *shift_flags(info)))


def run_measures(
    encoder: nn.Module,
    data: DatasetBundle,
    make_views,
    encoded: Encoded,
    fit: LinearFit,
    reg_weight: float,
    args: argparse.Namespace,
    *,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Every measure ``args`` asks for, as summary fields, with ``measure_seconds``.
    ``make_views(seed)`` returns the evaluation's view maker (crop, flip, colour; Spirograph's
    renderer) drawing from a generator seeded with ``seed``; ``encoded``, ``fit`` and
    ``reg_weight`` are the probe's."""
    info, fields, seconds = data.info, {}, {}
    task = info.task
    common = dict(batch_size=args.batch_size, num_workers=args.num_workers)

    def timed(name: str, start: float) -> None:
        seconds[name] = round(time.perf_counter() - start, 2)

    subset = seeded_subset(data.probe_test, args.invariance_images, seed)
    if args.conditional_variance:
        start = time.perf_counter()
        fields["conditional_variance"] = {
            **conditional_variance(
                encoder, lambda: subset.batches(args.batch_size, args.num_workers),
                make_views(seed + _SEEDS["variance"]), args.conditional_variance,
                seed=seed, device=device,
            ),
            "draws": args.conditional_variance, "images": len(subset),
        }  # fmt: skip
        timed("conditional_variance", start)
    if args.authors_variance:
        start = time.perf_counter()
        fields["authors_variance"] = {
            **authors_variance(
                encoder, subset.batches(AUTHORS_BATCH, args.num_workers),
                make_views(seed + _SEEDS["authors"]), seed=seed, device=device,
            ),
            "images": len(subset),
        }  # fmt: skip
        timed("authors_variance", start)
    for kind in shift_flags(info):
        amounts = getattr(args, kind)
        if not amounts:
            continue
        start = time.perf_counter()
        scores = []
        for amount in amounts:
            # The same seed for every amount: each image's draw is scaled, not redrawn.
            generator = torch.Generator(device).manual_seed(seed + _SEEDS["shift"])
            if info.rendered:
                bounds = shifted_bounds(kind.removeprefix("shift_"), amount)
                to_images = lambda x, b=bounds, g=generator: shifted_renderings(x, b, g)  # noqa: E731
            else:
                to_images = lambda x, s=amount, g=generator: jitter_every_image(  # noqa: E731
                    x, info.name, s, g
                )
            test_x = encode(encoder, data.probe_test.batches(**common), to_images, device)
            result = evaluate_linear(fit, test_x, encoded.test_y, task)
            scores.append({"amount": amount, **_scores(result)})
        fields[kind] = scores
        timed(kind, start)
    if args.averaging_curve:
        start = time.perf_counter()
        fields["averaging_curve"] = averaging_curve(
            encoder, data, make_views(seed + _SEEDS["curve"]), args, reg_weight,
            seed=seed, device=device,
        )  # fmt: skip
        timed("averaging_curve", start)
    if args.nuisance:
        start = time.perf_counter()
        views = make_views(seed + _SEEDS["nuisance"])
        train = encode_with_nuisance(encoder, data.probe_train.batches(**common), views, device)
        test = encode_with_nuisance(encoder, data.probe_test.batches(**common), views, device)
        fields["nuisance"] = nuisance_prediction(train, test, nuisance_names(views))
        timed("nuisance", start)
    if args.label_fractions:
        start = time.perf_counter()
        fields["label_fractions"] = label_fractions(
            encoded, info, args.label_fractions, reg_weight, seed=seed
        )
        timed("label_fractions", start)
    if seconds:
        fields["measure_seconds"] = seconds
    return fields


def averaging_curve(
    encoder: nn.Module,
    data: DatasetBundle,
    views,
    args: argparse.Namespace,
    reg_weight: float,
    *,
    seed: int,
    device: torch.device,
) -> list[dict[str, Any]]:
    """The probe on the mean of M augmented copies for every M of ``--averaging-curve``, from
    one run of the largest M (`evaluation.encoding.prefix_means`): every image for M ≤
    ``--curve-full-passes``, and for every M on a seeded subset of ``--curve-subset`` images per
    split, so that the whole curve can be read on one set of images."""
    info, passes = data.info, sorted(set(args.averaging_curve))
    means = {}
    for name, split in (("train", data.probe_train), ("test", data.probe_test)):
        n = len(split)
        rows = torch.arange(n)
        if n > args.curve_subset:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            rows = order[: args.curve_subset].sort().values

        def encode_pass(chosen, split=split):
            part = split if chosen is None else split.subset(chosen)
            batches = part.batches(args.batch_size, args.num_workers)
            return encode(encoder, batches, lambda x: views.augment(x)[0], device)

        means[name] = prefix_means(encode_pass, passes, args.curve_full_passes, rows)
        means[name + "_rows"] = rows
    train_y = torch.as_tensor(data.probe_train.targets).to(device)
    test_y = torch.as_tensor(data.probe_test.targets).to(device)
    curve = []
    for images, which in (("all", 0), ("subset", 1)):
        for m in passes:
            if m not in means["train"][which]:
                continue
            ty, sy = (train_y, test_y) if which == 0 else (
                train_y[means["train_rows"]], test_y[means["test_rows"]]
            )  # fmt: skip
            encoded = Encoded(means["train"][which][m], ty, means["test"][which][m], sy)
            fit, result, _ = fit_and_score(
                encoded, info.task, info.num_outputs, reg_weight=reg_weight, seed=seed
            )
            curve.append(
                {"passes": m, "images": images, "n_train": len(ty), "n_test": len(sy),
                 **_scores(result), "converged": fit.converged}
            )  # fmt: skip
    return curve


def label_fractions(
    encoded: Encoded, info: DatasetInfo, fractions: list[float], reg_weight: float, *, seed: int
) -> list[dict[str, Any]]:
    """The probe refitted on a stratified ``fraction`` of the labelled training set's
    representations (Spirograph: a seeded random fraction), scored on the whole test set."""
    results = []
    n = encoded.train_x.shape[0]
    for fraction in fractions:
        if info.num_classes is not None:
            rows = stratified_indices(encoded.train_y.cpu(), fraction, info.num_classes, seed)
        elif fraction >= 1:
            rows = torch.arange(n)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            rows = order[: max(2, int(n * fraction))].sort().values
        rows = rows.to(encoded.train_x.device)
        part = Encoded(encoded.train_x[rows], encoded.train_y[rows], encoded.test_x, encoded.test_y)
        fit, result, _ = fit_and_score(
            part, info.task, info.num_outputs, reg_weight=reg_weight, seed=seed
        )
        results.append(
            {"fraction": fraction, "n_train": len(rows), **_scores(result),
             "converged": fit.converged}
        )  # fmt: skip
    return results


def _scores(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k in ("accuracy", "loss", "mse")}
