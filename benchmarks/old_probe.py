"""The probe as it was before it was fitted to its optimum, against the current one.

    python3 -m benchmarks.old_probe results/spirograph-simclr-seed0.pth \\
        results/cifar10-simclr-seed0.pth --random-init

Until commit 5e1b0c8 the probe ran L-BFGS in float32 with 20 stored pairs, stopped after 1,000
iterations, and called a fit converged whenever it stopped before that cap. This script reads that
`utils/probe.py` from the git history and fits it and the current probe to the same
representations (the results protocol's: one augmented pass for Spirograph, plain images
otherwise, the labelled subset and draws seeded by ``--seed``) at the same default weight (1e-8
regression, 1e-5 classification), then prints each one's test metric, iterations, gradient norm
and training objective, the last two recomputed here in float64 for both. It needs the repository's
git history.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from datasets.sources import load_dataset
from evaluation.encoding import representations
from evaluation.probe import (
    DEFAULT_REG_WEIGHT,
    evaluate_linear,
    fit_linear,
    gradient_norm,
    objective_value,
)
from models.pretrained import load_encoder
from utils.checkpoint import resolve_checkpoint
from utils.cli import UsageError, run_cli, seed_value

OLD_COMMIT = "5e1b0c8"
REPO = Path(__file__).resolve().parent.parent


def old_probe_module():
    """`utils/probe.py` as of ``OLD_COMMIT``, imported under another name."""
    try:
        source = subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:utils/probe.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        raise UsageError(
            f"cannot read utils/probe.py at commit {OLD_COMMIT}: this needs a git clone of the "
            "repository with its history"
        ) from None
    path = Path(tempfile.mkdtemp()) / "old_probe.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_probe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_probe"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def objective_and_gradient(fit, x, y, task: str, reg: float) -> tuple[float, float]:
    """The probe's objective and its gradient norm at the fit's (W, b), in float64."""
    model = copy.deepcopy(fit.model).double()
    targets = y if task == "classification" else y.double()
    objective = objective_value(model, x.double(), targets, task, reg)
    objective.backward()
    return objective.item(), gradient_norm(model)


def compare(path: Path, random_init: bool, seed: int, old) -> dict[str, dict]:
    device = torch.device("cpu")
    encoder, run, _ = load_encoder(path, device, random_init=random_init, seed=seed)
    data = load_dataset(run["dataset"], proportion=run.get("proportion", 1.0), seed=seed)
    task = data.info.task
    # The evaluation's views (no blur), drawing from one generator for both splits in turn.
    views = data.info.views(
        run.get("colour_strength", 0.5), blur=False, generator=torch.Generator().manual_seed(seed)
    )
    common = dict(
        untransformed=task == "classification",
        num_passes=1,
        batch_size=256,
        num_workers=0,
        device=device,
    )
    train_x = representations(encoder, data.probe_train, views, **common)
    train_y = torch.as_tensor(data.probe_train.targets)
    test_x = representations(encoder, data.probe_test, views, **common)
    test_y = torch.as_tensor(data.probe_test.targets)
    reg = DEFAULT_REG_WEIGHT[task]
    row = {}
    for label, fit_fn in (("old", old.fit_linear), ("exact", fit_linear)):
        fit = fit_fn(train_x, train_y, data.info.num_outputs, task=task, reg_weight=reg)
        result = evaluate_linear(fit, test_x, test_y, task)
        objective, grad_norm = objective_and_gradient(fit, train_x, train_y, task, reg)
        row[label] = {
            "test": result.get("accuracy", result.get("mse")),
            "iterations": fit.iterations,
            "reported_converged": fit.converged,
            "grad_norm": grad_norm,
            "objective": objective,
        }
    return row


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="checkpoints (paths)")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="also compare each checkpoint's network at random initialisation",
    )
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the data and draws")
    return p


def main(args: argparse.Namespace) -> dict[str, dict]:
    old = old_probe_module()
    rows = {}
    for name in args.checkpoints:
        path = resolve_checkpoint(name, ".")
        for random_init in (False, True) if args.random_init else (False,):
            label = f"{path.stem}{' at random initialisation' if random_init else ''}"
            rows[label] = compare(path, random_init, args.seed, old)
            for probe, r in rows[label].items():
                print(
                    f"{label:45} {probe:5}  test {r['test']:.5g}  {r['iterations']:5} iterations"
                    f"  gradient norm {r['grad_norm']:.1e}  objective {r['objective']:.8g}"
                    f"  reported converged {r['reported_converged']}",
                    flush=True,
                )
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    run_cli(main, get_args_parser())
