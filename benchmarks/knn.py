"""The cost per call of training's two monitors on one encoding of the labelled sets: the kNN
(`--knn-freq`, both votes of `evaluation.knn`) against the linear probe (`--test-freq`, the
L-BFGS fit of `evaluation.probe` to its tolerance), and the peak memory each adds.

    python3 -m benchmarks.knn          # 10,000 training × 10,000 test rows, ResNet-18 at 0.25
    python3 -m benchmarks.knn --train 2000 --test 500 --no-memory
    python3 -m benchmarks.knn --load-from checkpoint/cifar10-simclr-seed0.pth   # real features

Both monitors start by encoding the labelled sets. That is timed once, on random images through
a randomly initialised encoder of --arch and --width (the cost of a forward pass does not depend
on the pixels), and added to each. The features are the encoder's outputs, labelled by a noisy
linear rule of them; ``--load-from`` takes a trained checkpoint's own encoding of its labelled
sets instead, whose probe is the one training fits.

Peak memory is measured in a fresh process per computation, on Gaussian features of the same
shape: the kNN in blocks of `evaluation.knn.CHUNK` test rows, the kNN in one block of every test
row (what the blocks avoid), and the probe's fit. Everything else is timed in this process, in
the same run, so the ratios do not depend on the machine. The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import torch

from benchmarks.loss_memory import peak_added_mib
from datasets.sources import load_dataset
from evaluation.encoding import ENCODE_BATCH_SIZE, Encoded, encode, encode_sets, probe_views
from evaluation.knn import CHUNK, knn_scores
from evaluation.probe import DEFAULT_REG_WEIGHT, fit_and_score
from models import ARCHITECTURES, ResNetEncoder
from models.pretrained import load_encoder
from utils.cli import UsageError, int_at_least, resolve_device, run_cli, width_multiplier


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", type=int_at_least(2), default=10_000, help="training rows (10000)")
    p.add_argument("--test", type=int_at_least(1), default=10_000, help="test rows (10000)")
    p.add_argument("--classes", type=int_at_least(2), default=10, help="classes (10)")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="resnet18", help="(resnet18)")
    p.add_argument("--width", type=width_multiplier, default=0.25, help="channel multiplier (0.25)")
    p.add_argument(
        "--load-from",
        type=Path,
        default=None,
        metavar="FILE",
        help="time on a training checkpoint's encoding of its labelled sets, as training's "
        "monitors make it, instead of random images (--train, --test, --arch, --width unused)",
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure peak memory in fresh processes (on)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of images, features and labels (0)")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="cpu", help="where to run (cpu)"
    )
    return p


def labelled(features: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    """Labels from a noisy random linear rule of ``features``: neither separable nor chance."""
    gen = torch.Generator().manual_seed(seed)
    x = features.double().cpu()
    rule = torch.randn(x.shape[1], classes, generator=gen, dtype=torch.float64)
    logits = (x - x.mean(0)) / x.std(0).clamp_min(1e-12) @ rule / x.shape[1] ** 0.5
    noise = torch.randn(x.shape[0], classes, generator=gen, dtype=torch.float64)
    return (logits + noise).argmax(dim=1).to(features.device)


def split(features: torch.Tensor, labels: torch.Tensor, n_train: int) -> Encoded:
    return Encoded(features[:n_train], labels[:n_train], features[n_train:], labels[n_train:])


def probe(encoded: Encoded, classes: int) -> dict:
    """The in-training probe's fit and test score on ``encoded``."""
    fit, result, _ = fit_and_score(
        encoded, "classification", classes, reg_weight=DEFAULT_REG_WEIGHT["classification"]
    )
    return {
        "accuracy": result["accuracy"],
        "converged": fit.converged,
        "iterations": fit.iterations,
    }


def _peak(kind: str, n_train: int, n_test: int, dim: int, classes: int, seed: int, queue) -> None:
    """In a fresh process: the peak MiB one computation adds to Gaussian features."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n_train + n_test, dim, generator=gen)
    encoded = split(features, labelled(features, classes, seed), n_train)
    work = {
        "knn_blocks": lambda: knn_scores(encoded, classes),
        "knn_one_block": lambda: knn_scores(encoded, classes, chunk=n_test),
        "probe": lambda: probe(encoded, classes),
    }[kind]
    queue.put(peak_added_mib(work)[0])


def peak_memory(n_train: int, n_test: int, dim: int, classes: int, seed: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    peaks = {}
    for kind in ("knn_blocks", "knn_one_block", "probe"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak, args=(kind, n_train, n_test, dim, classes, seed, queue))
        proc.start()
        peaks[kind] = round(queue.get(), 1)
        proc.join()
    return peaks


def timed(device: torch.device, work):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def checkpoint_encoding(
    args: argparse.Namespace, device: torch.device
) -> tuple[float, Encoded, argparse.Namespace]:
    """The seconds taken to encode ``--load-from``'s labelled sets on the monitors' views
    (`evaluation.probe.training_scores`'), the encoding, and ``args`` with its sizes."""
    encoder, run, _ = load_encoder(args.load_from, device)
    data = load_dataset(run["dataset"], proportion=run.get("proportion", 1.0), seed=args.seed)
    if data.info.task != "classification" or not data.info.full_batch_probe:
        raise UsageError(f"{args.load_from}: a kNN needs an in-memory classification dataset")
    generator = torch.Generator(device).manual_seed(args.seed)
    views = data.info.views(run.get("colour_strength", 0.5), blur=False, generator=generator)
    plain, passes = probe_views(data.info.rendered, num_passes=None, untransformed=False)
    encode_s, encoded = timed(device, lambda: encode_sets(
        encoder, data, views, untransformed=plain, num_passes=passes,
        batch_size=ENCODE_BATCH_SIZE, num_workers=0, device=device,
    ))  # fmt: skip
    sizes = dict(train=len(data.probe_train), test=len(data.probe_test),
                 classes=data.info.num_outputs, arch=run["arch"], width=run["width"])  # fmt: skip
    return encode_s, encoded, argparse.Namespace(**{**vars(args), **sizes})


def main(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    print(f"device {device}, {threads} threads, torch {torch.__version__}")
    if args.load_from is not None:
        encode_s, encoded, args = checkpoint_encoding(args, device)
    else:
        gen = torch.Generator().manual_seed(args.seed)
        images = torch.rand(args.train + args.test, 3, 32, 32, generator=gen)
        torch.manual_seed(args.seed)
        encoder = ResNetEncoder(args.arch, "cifar", args.width).to(device)
        batches = images.split(ENCODE_BATCH_SIZE)
        encode(encoder, batches[:1], lambda x: x, device)  # warm-up: a first call's one-off costs
        encode_s, features = timed(device, lambda: encode(encoder, batches, lambda x: x, device))
        encoded = split(features, labelled(features, args.classes, args.seed), args.train)
    features = encoded.train_x
    knn_scores(split(features[:64], encoded.train_y[:64], 32), args.classes)  # warm-up
    knn_s, knn = timed(device, lambda: knn_scores(encoded, args.classes))
    probe_s, fit = timed(device, lambda: probe(encoded, args.classes))
    summary = {
        "device": str(device), "threads": threads, "n_train": args.train, "n_test": args.test,
        "dim": features.shape[1], "arch": args.arch, "width": args.width, "chunk": CHUNK,
        "encode_seconds": encode_s, "knn_seconds": knn_s, "probe_fit_seconds": probe_s,
        "probe": fit,
        "knn_accuracy": {name: entry["accuracy"] for name, entry in knn.items()},
        # Per monitor call: the shared encoding plus the monitor's own work.
        "knn_call_over_probe_call": (encode_s + knn_s) / (encode_s + probe_s),
        "knn_over_probe_fit": knn_s / probe_s,
    }  # fmt: skip
    print(
        f"{args.train:,} training × {args.test:,} test rows of {features.shape[1]} dimensions: "
        f"encoding {encode_s:.1f} s; kNN (both votes) {knn_s:.2f} s; probe fit {probe_s:.2f} s "
        f"({fit['iterations']} iterations, converged {fit['converged']}); a kNN call costs "
        f"{summary['knn_call_over_probe_call']:.2f}× a probe call"
    )
    if args.memory:
        summary["peak_mib"] = peak_memory(
            args.train, args.test, features.shape[1], args.classes, args.seed
        )
        print("peak memory added (MiB): " + ", ".join(
            f"{k} {v:.1f}" for k, v in summary["peak_mib"].items()))  # fmt: skip
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
