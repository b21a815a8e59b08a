"""One evaluation of a checkpoint by either evaluation script (spec section 7)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any

import torch
from torch import nn

from augmentation.views import NaturalViews, SpirographViews
from datasets.imagenet import ImageFolderCrops
from datasets.sources import DATASETS, DatasetBundle, load_dataset
from evaluation.encoding import Encoded, encode_sets, probe_views
from evaluation.knn import CHUNK, knn_scores
from evaluation.measures import (
    check_label_fractions,
    resolve_measure_args,
    run_measures,
    wanted,
)
from evaluation.probe import MAX_ITERATIONS, LinearFit, fit_and_score
from models.pretrained import load_encoder
from utils.checkpoint import WriteError, resolve_checkpoint, write_text
from utils.cli import UsageError, resolve_device
from utils.memory import out_of_memory


class Evaluation:
    """One evaluation of a checkpoint (spec section 7) by either script: its encoder (or a
    baseline: ``--random-init``, ``--raw-pixels``) checked against the script's ``task``, its
    data and views, the invariance measure, and the JSON summary printed last."""

    def __init__(self, args: argparse.Namespace, task: str) -> None:
        if args.untransformed and args.num_passes is not None:
            raise UsageError(
                "--untransformed encodes plain images, --num-passes averages augmented copies; "
                "drop one of them"
            )
        self.args = args
        if args.output is not None:
            folder = args.output.parent
            if args.output.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
                why = (
                    "is a folder" if args.output.is_dir() else f"{folder} is not a writable folder"
                )
                raise UsageError(f"--output {args.output}: {why}; give a file in a writable folder")
        self.device = resolve_device(args.device)
        self.path = resolve_checkpoint(args.load_from, args.checkpoint_dir)
        if args.random_init and args.raw_pixels:
            raise UsageError("--random-init and --raw-pixels are two different baselines; pick one")
        self.encoder, self.run, epochs = load_encoder(
            self.path, self.device, random_init=args.random_init, seed=args.seed
        )
        if args.raw_pixels:
            self.encoder = nn.Flatten().to(self.device)
        self.info = DATASETS[self.run["dataset"]]
        knn = [f for f in ("knn", "knn_only") if getattr(args, f, False)]
        if self.info.task != task and knn:
            flag = "--" + knn[-1].replace("_", "-")
            raise UsageError(
                f"{flag}: {self.path} was trained on {self.info.name}, whose targets are "
                f"continuous, with no classes to vote for; drop {flag} (its probe is "
                f"{self.info.evaluation_script})"
            )
        if self.info.task != task:
            raise UsageError(
                f"{self.path} was trained on {self.info.name}; use {self.info.evaluation_script}"
            )
        resolve_measure_args(args, self.info)
        # Every fit (the probe's and each measure's) stops at one cap; only L-BFGS scripts set it.
        self.max_iter = getattr(args, "max_iter", None) or MAX_ITERATIONS
        self.seed = args.seed if args.seed is not None else self.run.get("seed", 0)
        # What the probe encodes: plain images, or the mean of `passes` augmented copies.
        self.plain, self.passes = probe_views(
            self.info.rendered, args.num_passes, args.untransformed
        )
        if args.raw_pixels:
            self.weights = "raw pixels, no encoder"
        elif args.random_init:
            self.weights = "random initialisation"
        else:
            self.weights = f"{epochs} epoch{'' if epochs == 1 else 's'}"

    @property
    def views_name(self) -> str:
        """What the encoding is of, in the summary: ``plain`` images or ``augmented`` copies."""
        return "plain" if self.plain else "augmented"

    def views(self, data: DatasetBundle, seed: int) -> NaturalViews | SpirographViews:
        """The training augmentation without blur (spec section 7: crop, flip, colour)."""
        generator = torch.Generator(self.device).manual_seed(seed)
        return data.info.views(
            self.run.get("colour_strength", 0.5), blur=False, generator=generator
        )

    def load(self) -> tuple[DatasetBundle, NaturalViews | SpirographViews]:
        """The dataset at the run's proportion (or --proportion) and its views, seeded by the
        run's seed (or --seed); the clock of the summary's ``seconds`` starts here."""
        args, run = self.args, self.run
        print(
            f"{self.path}: {run['arch']} on {run['dataset']} ({self.weights}), device {self.device}"
        )
        self.start = time.perf_counter()
        share = args.proportion if args.proportion is not None else run.get("proportion", 1.0)
        data = load_dataset(run["dataset"], proportion=share, seed=self.seed)
        check_label_fractions(args.label_fractions, len(data.probe_train), data.info)
        return data, self.views(data, self.seed)

    def encode(self, data: DatasetBundle, views: NaturalViews | SpirographViews) -> Encoded:
        """The labelled training and test sets on the views of `probe_views` (spec section 7),
        which the probe, the kNN and the measures share."""
        args = self.args
        if isinstance(data.probe_train, ImageFolderCrops):
            # ImageNet's labelled set gives the SGD probe random crops; an encoding of it, as
            # of its test set, is of centre crops.
            data = dataclasses.replace(data, probe_train=data.probe_train.centred())
        where = f"the encoding (batches of {args.batch_size} images on {self.device})"
        with out_of_memory(where, "lower --batch-size"):
            return encode_sets(
                self.encoder, data, views, untransformed=self.plain, num_passes=self.passes,
                batch_size=args.batch_size, num_workers=args.num_workers, device=self.device,
                verbose=True,
            )  # fmt: skip

    def probe(self, encoded: Encoded) -> tuple[LinearFit, dict[str, Any], float]:
        """Spec section 7's probe fitted on ``encoded``: the fit, its test result and the
        regularisation weight used."""
        n, d = encoded.train_x.shape
        where = f"the probe's fit ({n} × {d} features in float64 on {self.device})"
        with out_of_memory(where, "lower --proportion (the labelled images fitted on)"):
            return fit_and_score(
                encoded, self.info.task, self.info.num_outputs, reg_weight=self.args.reg_weight,
                seed=self.seed, max_iter=self.max_iter, verbose=True,
            )  # fmt: skip

    def knn(self, encoded: Encoded) -> dict[str, Any]:
        """`knn_scores` on ``encoded`` at the flags' settings, with the views it voted on."""
        args = self.args
        given = dict(weighted_k=args.knn_k, temperature=args.knn_temperature,
                     majority_k=args.knn_majority_k)  # fmt: skip
        n = encoded.train_x.shape[0]
        where = f"the kNN ({CHUNK} test rows × {n} training rows at a time on {self.device})"
        with out_of_memory(where, "lower --proportion (the labelled images voted with)"):
            scores = knn_scores(
                encoded, self.info.num_outputs, **{k: v for k, v in given.items() if v is not None}
            )
        for name, entry in scores.items():
            lowered = entry.get("k_lowered_from")
            note = f" (k {lowered} lowered to the {entry['k']} labelled images)" if lowered else ""
            print(
                f"kNN {name} vote, k = {entry['k']}: test accuracy {entry['accuracy']:.2f}%{note}"
            )
        return {
            **scores,
            "views": self.views_name,
            "num_passes": None if self.plain else self.passes,
        }

    def measures(
        self, data: DatasetBundle, encoded: Encoded, fit: LinearFit, reg_weight: float
    ) -> dict[str, Any]:
        """The summary fields of the measures asked for (`evaluation.measures`)."""
        if not wanted(self.args, self.info):
            return {}
        return run_measures(
            self.encoder, data, lambda seed: self.views(data, seed),
            (encoded, fit, reg_weight, self.plain), self.args, seed=self.seed,
            max_iter=self.max_iter, device=self.device,
        )  # fmt: skip

    def summary(self, data: DatasetBundle, **scores: Any) -> dict[str, Any]:
        """The summary's first fields: the checkpoint, the ``scores`` and the probe's set sizes."""
        args = self.args
        summary = {
            "dataset": self.run["dataset"], "arch": self.run["arch"],
            "width": self.run["width"], "checkpoint": str(self.path),
            "random_init": args.random_init, "raw_pixels": args.raw_pixels, **scores,
        }  # fmt: skip
        summary.update(n_train=len(data.probe_train), n_test=len(data.probe_test))
        return summary

    def finish(
        self,
        summary: dict[str, Any],
        fit: LinearFit | None,
        result: dict[str, Any],
        *,
        reg_weight: float | None,
        solver: str | None,
        converged: bool | None,
        fitted_on_passes: bool = True,
    ) -> dict[str, Any]:
        """Add how the probe was fitted (nothing when ``fit`` is None: no probe, `--knn-only`) and
        the seconds since `load`, print the summary as the last line and return it.
        ``fitted_on_passes`` False (SGD, a fresh crop at every step) leaves the probe's
        ``views``, ``num_passes`` and ``untransformed`` out."""
        args = self.args
        if fit is not None:
            summary.update(
                views=self.views_name if fitted_on_passes else None,
                num_passes=None if self.plain or not fitted_on_passes else self.passes,
                untransformed=args.untransformed if fitted_on_passes else None,
                reg_weight=reg_weight,
                solver=solver,
                train_objective=fit.train_loss,
                grad_norm=fit.grad_norm,
                converged=converged,
                **{k: v for k, v in result.items() if k.startswith(("reg_search", "validation_"))},
            )
        summary["seconds"] = round(time.perf_counter() - self.start, 2)
        line = json.dumps(summary)
        print(line)
        if args.output is not None:
            try:
                write_text(args.output, line + "\n")  # replaces an earlier result whole, or not
            except WriteError as error:
                raise WriteError(
                    f"--output: {error}; the summary is the line above", error.path
                ) from None
        return summary
