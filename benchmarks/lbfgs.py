"""Time the linear probe's fit against a fixed loop of default `torch.optim.LBFGS` calls.

The baseline is the usual way to write a full-batch L-BFGS probe: `torch.optim.LBFGS` with its
defaults (lr 1, 20 iterations per call, no line search) stepped a fixed number of times. The
probe (`evaluation/probe.py`) instead runs preconditioned L-BFGS with a strong-Wolfe line search
until the gradient norm meets its tolerance. Both minimise the same objective (cross-entropy +
reg·‖W‖², bias unpenalised) on the same random features, in float64 (the probe's precision),
measured in the same process, so the ratios do not depend on the machine's speed:

    python3 -m benchmarks.lbfgs              # 10,000 × 512 and 50,000 × 2,048, 10 classes
    python3 -m benchmarks.lbfgs --sizes 2000x64 --calls 50

For each size it prints the probe's time and final loss, the baseline's time for all its calls
and its final loss, and the time the baseline took to first reach the probe's loss (the fair
comparison: the same loss, not the same number of calls; "reached" allows a relative 1e-5); the
last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from evaluation.probe import fit_linear, objective_value
from utils.cli import float_at_least, int_at_least, resolve_device, run_cli

SAME_LOSS = 1 + 1e-5  # the baseline "reaches" the probe's loss within this relative margin


def size(text: str) -> tuple[int, int]:
    try:
        n, d = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxD such as 10000x512, got {text!r}") from None
    if n < 2 or d < 1:
        raise argparse.ArgumentTypeError(f"need N >= 2 and D >= 1, got {text!r}")
    return n, d


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--sizes",
        type=size,
        nargs="+",
        default=[(10_000, 512), (50_000, 2_048)],
        help="feature matrices N×D to time (default: 10000x512 50000x2048)",
    )
    p.add_argument("--classes", type=int_at_least(2), default=10, help="classes (default: 10)")
    p.add_argument(
        "--calls", type=int_at_least(1), default=500, help="baseline optimizer.step calls (500)"
    )
    p.add_argument(
        "--reg-weight", type=float_at_least(0.0), default=1e-5, help="weight of ‖W‖² (1e-5)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random features (0)")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="cpu", help="where to run (cpu)"
    )
    return p


def random_problem(
    n: int, d: int, classes: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features with labels from a noisy random linear rule, so that the optimum is
    neither trivially separable nor chance."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen, dtype=torch.float64)
    logits = features @ torch.randn(d, classes, generator=gen, dtype=torch.float64) / d**0.5
    labels = (logits + torch.randn(n, classes, generator=gen, dtype=torch.float64)).argmax(dim=1)
    return features.to(device), labels.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline(
    features: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    reg_weight: float,
    calls: int,
    target: float,
) -> dict[str, float | None]:
    """A fixed number of default `torch.optim.LBFGS` steps; the loss is read after each call
    (outside the timed span) to find when it first reaches ``target``."""
    model = torch.nn.Linear(
        features.shape[1], classes, device=features.device, dtype=features.dtype
    )
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    optimizer = torch.optim.LBFGS(model.parameters())

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective_value(model, features, labels, "classification", reg_weight)
        loss.backward()
        return loss

    elapsed, reached = 0.0, None
    for _ in range(calls):
        sync(features.device)
        start = time.perf_counter()
        optimizer.step(closure)
        sync(features.device)
        elapsed += time.perf_counter() - start
        if reached is None:
            with torch.no_grad():
                loss = objective_value(model, features, labels, "classification", reg_weight)
            if loss.item() <= target:
                reached = elapsed
    with torch.no_grad():
        final = objective_value(model, features, labels, "classification", reg_weight).item()
    return {"seconds": elapsed, "loss": final, "seconds_to_probe_loss": reached}


def main(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    # Warm-up outside the timings: the first autograd and BLAS calls of a process pay one-off costs.
    warm_features, warm_labels = random_problem(64, 8, args.classes, args.seed, device)
    fit_linear(warm_features, warm_labels, args.classes, task="classification", reg_weight=1e-5)
    rows = []
    for n, d in args.sizes:
        features, labels = random_problem(n, d, args.classes, args.seed, device)
        sync(device)
        start = time.perf_counter()
        fit = fit_linear(
            features, labels, args.classes, task="classification", reg_weight=args.reg_weight
        )
        sync(device)
        probe_seconds = time.perf_counter() - start
        base = baseline(
            features, labels, args.classes, args.reg_weight, args.calls, fit.train_loss * SAME_LOSS
        )
        reached = base["seconds_to_probe_loss"]
        row = {
            "n": n,
            "d": d,
            "probe_seconds": round(probe_seconds, 3),
            "probe_loss": fit.train_loss,
            "probe_iterations": fit.iterations,
            "probe_grad_norm": fit.grad_norm,
            "baseline_calls": args.calls,
            "baseline_seconds": round(base["seconds"], 3),
            "baseline_loss": base["loss"],
            "baseline_seconds_to_probe_loss": None if reached is None else round(reached, 3),
            "speedup_same_loss": None if reached is None else round(reached / probe_seconds, 2),
            "speedup_fixed_loop": round(base["seconds"] / probe_seconds, 2),
        }
        rows.append(row)
        same = (
            "never reached the probe's loss"
            if reached is None
            else f"reached the probe's loss after {reached:.1f} s ({row['speedup_same_loss']}×)"
        )
        print(
            f"{n:,} × {d:,}: probe {probe_seconds:.1f} s, loss {fit.train_loss:.6f} "
            f"({fit.iterations} iterations, gradient norm {fit.grad_norm:.1e}); "
            f"{args.calls} default LBFGS calls {base['seconds']:.1f} s, loss {base['loss']:.6f}; "
            f"baseline {same}"
        )
    summary = {"device": str(device), "threads": torch.get_num_threads(), "rows": rows}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
