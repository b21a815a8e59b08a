"""The paper's evaluations beyond the linear probe, each switched on by a flag and written to the
JSON summary (docs/evaluation.md). Each draws from a generator seeded by the evaluation's seed plus
its `SEED_OFFSETS` entry, and reuses the probe's encoding where it can."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from augmentation.views import NaturalViews, SpirographViews
from datasets.natural import stratified_indices
from datasets.sources import DatasetBundle, DatasetInfo
from evaluation.encoding import Encoded, encode, prefix_means
from evaluation.invariance import seeded_rows, seeded_subset
from evaluation.nuisance import encode_with_nuisance, nuisance_names, nuisance_prediction
from evaluation.probe import MAX_ITERATIONS, LinearFit, fit_and_score, headline_scores
from evaluation.shift import DEFAULT_STRENGTHS, SPIROGRAPH_SHIFTS, shift_scores, shifted_bounds
from evaluation.variance import AUTHORS_BATCH, authors_variance, conditional_variance
from utils.cli import UsageError
from utils.memory import out_of_memory

# Each measure's seed is the evaluation's plus its offset: adding a measure moves no other's draws.
SEED_OFFSETS = {"variance": 2, "authors": 3, "shift": 4, "curve": 5, "nuisance": 6}
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
    make_views: Callable[[int], NaturalViews | SpirographViews],
    probe: tuple[Encoded, LinearFit, float, bool],
    args: argparse.Namespace,
    *,
    seed: int,
    max_iter: int,
    device: torch.device,
) -> dict[str, Any]:
    """Every measure ``args`` asks for, as summary fields, with ``measure_seconds``.
    ``make_views(seed)``: the evaluation's view maker seeded with ``seed``; ``probe``: the probe's
    encoding, fit, regularisation weight and whether it encoded plain images."""
    encoded, fit, reg_weight, plain = probe
    info, fields, seconds = data.info, {}, {}
    common = dict(batch_size=args.batch_size, num_workers=args.num_workers)
    subset = seeded_subset(data.probe_test, args.invariance_images, seed)

    def offset(name: str) -> int:
        return seed + SEED_OFFSETS[name]

    @contextlib.contextmanager
    def measuring(name: str, size: str, flags: str) -> Iterator[None]:
        """Time measure ``name``; an allocation that fails in it is one line naming ``size``
        (what sets its memory) and the ``flags`` that lower it."""
        start = time.perf_counter()
        with out_of_memory(f"the measure {name} ({size} on {device})", f"lower {flags}"):
            yield
        seconds[name] = round(time.perf_counter() - start, 2)

    batches = f"batches of {args.batch_size} images"
    if args.conditional_variance:
        with measuring("conditional_variance", f"{len(subset)} images, {batches}",
                       "--invariance-images or --batch-size"):  # fmt: skip
            fields["conditional_variance"] = {
                **conditional_variance(
                    encoder, lambda: subset.batches(**common),
                    lambda: make_views(offset("variance")), args.conditional_variance,
                    seed=seed, device=device,
                ),
                "draws": args.conditional_variance, "images": len(subset),
            }  # fmt: skip
    if args.authors_variance:
        with measuring("authors_variance", f"{len(subset)} images, batches of {AUTHORS_BATCH}",
                       "--invariance-images"):  # fmt: skip
            fields["authors_variance"] = {
                **authors_variance(
                    encoder, subset.batches(AUTHORS_BATCH, args.num_workers),
                    make_views(offset("authors")), seed=seed, device=device,
                ),
                "images": len(subset),
            }  # fmt: skip
    for flag in shift_flags(info):
        if getattr(args, flag):
            with measuring(flag, f"the test set in {batches}", "--batch-size"):
                fields[flag] = shift_scores(
                    encoder, lambda: data.probe_test.batches(**common),
                    (encoded.test_x, encoded.test_y), fit, dataset=info.name,
                    kind=flag.removeprefix("shift_"), amounts=getattr(args, flag),
                    plain_probe=plain, seed=offset("shift"), device=device,
                )  # fmt: skip
    if args.averaging_curve:
        with measuring("averaging_curve", f"{max(args.averaging_curve)} passes, {batches}",
                       "--curve-subset, --curve-full-passes or --batch-size"):  # fmt: skip
            fields["averaging_curve"] = averaging_curve(
                encoder, data, make_views(offset("curve")), args, reg_weight,
                seed=seed, max_iter=max_iter, device=device,
            )  # fmt: skip
    if args.nuisance:
        with measuring("nuisance", f"both labelled sets in {batches}", "--batch-size"):
            views = make_views(offset("nuisance"))
            train = encode_with_nuisance(encoder, data.probe_train.batches(**common), views, device)
            test = encode_with_nuisance(encoder, data.probe_test.batches(**common), views, device)
            fields["nuisance"] = nuisance_prediction(train, test, nuisance_names(views))
    if args.label_fractions:
        with measuring("label_fractions", "the probe's encoding", "--proportion"):
            fields["label_fractions"] = label_fractions(
                encoded, info, args.label_fractions, reg_weight, seed=seed, max_iter=max_iter
            )
    if seconds:
        fields["measure_seconds"] = seconds
    return fields


def averaging_curve(
    encoder: nn.Module,
    data: DatasetBundle,
    views: NaturalViews | SpirographViews,
    args: argparse.Namespace,
    reg_weight: float,
    *,
    seed: int,
    max_iter: int,
    device: torch.device,
) -> dict[str, Any]:
    """The probe on the mean of M augmented copies for every M of ``--averaging-curve``, from one
    run of the largest M (`prefix_means`): on every image for M ≤ ``--curve-full-passes``, and for
    every M on a ``seed``-ed subset of ``--curve-subset`` images per split."""
    info, passes = data.info, sorted(set(args.averaging_curve))
    means, rows = {}, {}
    for name, split in (("train", data.probe_train), ("test", data.probe_test)):
        rows[name] = seeded_rows(len(split), args.curve_subset, seed)

        def encode_pass(chosen: Tensor | None, split=split) -> Tensor:
            part = split if chosen is None else split.subset(chosen)
            batches = part.batches(args.batch_size, args.num_workers)
            return encode(encoder, batches, lambda x: views.augment(x)[0], device)

        means[name] = prefix_means(encode_pass, passes, args.curve_full_passes, rows[name])
    train_y = torch.as_tensor(data.probe_train.targets).to(device)
    test_y = torch.as_tensor(data.probe_test.targets).to(device)
    labels = {
        "all": (train_y, test_y),
        "subset": (train_y[rows["train"].to(device)], test_y[rows["test"].to(device)]),
    }
    points = []
    for which, images in enumerate(("all", "subset")):
        ty, sy = labels[images]
        for m in passes:
            if m not in means["train"][which]:
                continue
            encoded = Encoded(means["train"][which][m], ty, means["test"][which][m], sy)
            fit, result, _ = fit_and_score(
                encoded, info.task, info.num_outputs, reg_weight=reg_weight, seed=seed,
                max_iter=max_iter,
            )  # fmt: skip
            points.append(
                {"passes": m, "images": images, "n_train": len(ty), "n_test": len(sy),
                 **headline_scores(result), "converged": fit.converged}
            )  # fmt: skip
    return {
        "points": points,
        "full_passes": args.curve_full_passes,
        "subset": {"train": len(rows["train"]), "test": len(rows["test"]), "seed": seed},
    }


def check_label_fractions(fractions: list[float] | None, n_train: int, info: DatasetInfo) -> None:
    """Refuse, before anything is encoded, a label fraction that leaves a class without an
    image (or Spirograph with fewer than two)."""
    for fraction in fractions or []:
        per_class = int(n_train * fraction / (info.num_classes or 1))
        if per_class < (1 if info.num_classes else 2):
            raise UsageError(
                f"--label-fractions {fraction:g} of {n_train} labelled training images leaves "
                f"{per_class} per {'class' if info.num_classes else 'probe'}; give a larger one"
            )


def label_fractions(
    encoded: Encoded,
    info: DatasetInfo,
    fractions: list[float],
    reg_weight: float,
    *,
    seed: int,
    max_iter: int = MAX_ITERATIONS,
) -> list[dict[str, Any]]:
    """The probe refitted on a stratified ``fraction`` of the labelled training set (Spirograph:
    a seeded random one), scored on the whole test set."""
    results = []
    n = encoded.train_x.shape[0]
    for fraction in fractions:
        if info.num_classes is not None:
            rows = stratified_indices(encoded.train_y.cpu(), fraction, info.num_classes, seed)
        else:
            rows = seeded_rows(n, int(n * fraction), seed)
        rows = rows.to(encoded.train_x.device)
        part = Encoded(encoded.train_x[rows], encoded.train_y[rows], encoded.test_x, encoded.test_y)
        fit, result, _ = fit_and_score(
            part, info.task, info.num_outputs, reg_weight=reg_weight, seed=seed, max_iter=max_iter
        )
        results.append(
            {"fraction": fraction, "n_train": len(rows), **headline_scores(result),
             "converged": fit.converged}
        )  # fmt: skip
    return results
