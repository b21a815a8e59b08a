"""Training throughput, with its bound and a naive baseline measured in the same run.

    python3 -m benchmarks.throughput --arch resnet18 --batch-size 128 --device cpu \\
        --cifar /tmp/cifar10-jpeg

Measures, in images per second (each image makes two views):
- bound: the encoder's forward and backward on both views of ready-made images, nothing else;
- plain step: the training step without the penalty (on-device augmentation from uint8 images,
  encoder, head, NT-Xent, LARS), `invariance_by_gradient.training_step` itself;
- penalty step: the same with the exact penalty on the step (K = 1), and the mean step with
  `--gp-every K` for each K of `--gp-every`;
- relative step: the penalty over the batch's spread (`--gp-scale spread`), timed in turns with
  the penalty step (the fastest of four turns each, the limit out of reach for both);
- epochs including data: `train_one_epoch` on Spirograph and on CIFAR-10 images (those of
  `--cifar`, an image-folder tree or torchvision's pickles, held in memory as uint8; random uint8
  images when it is not given), without the penalty;
- the naive baseline: the same CIFAR-10 epoch as commonly written, PIL bicubic crops, flips and
  colour jitter per image in DataLoader workers, and NT-Xent from a pairwise broadcast cosine
  similarity, with the same encoder, head and LARS.

Ratios: `plain_over_bound` (throughput; 1 means the step costs no more than the encoder),
`penalty_over_plain` and `relative_over_penalty` (time per step), `epoch_speedup_vs_naive`. A
table is printed, and as the last line one JSON object.

`--channels-last`, `--compile` and `--amp` time the training script's options of those names (with
`--compile`, the bound and the naive epoch use the compiled encoder too, so that only the data
path and the loss differ). `--loss-memory B` also measures the peak memory of NT-Xent's forward
and backward at batch B on the CPU, in a fresh process each, against the pairwise broadcast form
(`benchmarks/loss_memory.py`).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

import invariance_by_gradient as training
from augmentation.normalize import DATASET_STATS
from augmentation.views import NaturalViews
from benchmarks.loss_memory import loss_memory, pairwise_nt_xent
from datasets.natural import load_cifar
from datasets.sources import DATASETS, DatasetBundle, load_dataset
from models.invclr import Networks
from utils.cli import UsageError, int_at_least, resolve_device, run_cli, width_multiplier
from utils.run import Position


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--arch",
        choices=["resnet18", "resnet34", "resnet50"],
        default="resnet18",
        help="(resnet18)",
    )
    p.add_argument("--batch-size", type=int_at_least(2), default=128, help="images per step (128)")
    p.add_argument("--width", type=width_multiplier, default=1.0,
                   help="the training script's --width, for every network timed (1)")  # fmt: skip
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to run (auto)"
    )
    p.add_argument(
        "--steps", type=int_at_least(1), default=3, help="timed steps per measurement (3)"
    )
    p.add_argument(
        "--epoch-steps", type=int_at_least(1), default=5, help="steps in each timed epoch (5)"
    )
    p.add_argument(
        "--gp-every",
        type=int_at_least(2),
        nargs="*",
        default=[4],
        help="values of K > 1 to time the lazy penalty at (4)",
    )
    p.add_argument(
        "--channels-last", action="store_true", help="the training script's --channels-last"
    )
    p.add_argument(
        "--compile", action="store_true", help="the training script's --compile (all paths)"
    )
    p.add_argument(
        "--amp",
        choices=list(training.AMP_DTYPES),
        default="off",
        help="the training script's --amp (all paths; the bound and the naive epoch run their "
        "encoder and loss under the same autocast) (off)",
    )
    p.add_argument("--cifar", type=Path, default=None, help="CIFAR-10 folder (random images)")
    p.add_argument(
        "--num-workers", type=int_at_least(0), default=2, help="naive baseline's workers (2)"
    )
    p.add_argument(
        "--loss-memory",
        type=int_at_least(2),
        default=None,
        metavar="B",
        help="also measure NT-Xent's peak CPU memory at batch B against the pairwise form",
    )
    return p


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, calls: int, device: torch.device, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def training_args(args: argparse.Namespace, dataset: str, **flags) -> argparse.Namespace:
    """The training script's own defaults, with this benchmark's architecture and batch."""
    argv = ["--dataset", dataset, "--arch", args.arch, "--batch-size", str(args.batch_size)]
    argv += ["--width", str(args.width)]
    argv += ["--num-workers", "0", "--log-interval", str(10**9), "--lambda-gp", "0"]
    if args.channels_last:
        argv.append("--channels-last")
    if args.compile:
        argv.append("--compile")
    argv += ["--amp", args.amp]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return training.get_args_parser().parse_args(argv)


def cifar_images(args: argparse.Namespace, n: int) -> tuple[torch.Tensor, str]:
    if args.cifar is None:
        gen = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), "random"
    train, _ = load_cifar(args.cifar, "cifar10", 10)
    if len(train) < n:
        raise UsageError(f"--cifar has {len(train)} training images; the epochs need {n}")
    return train.inputs[:n], str(args.cifar)


def autocast(targs: argparse.Namespace, device: torch.device):
    dtype = training.AMP_DTYPES[targs.amp]
    return torch.autocast(device.type, dtype, enabled=dtype is not None)


def make_scaler(targs: argparse.Namespace, device: torch.device):
    return torch.amp.GradScaler(device.type) if targs.amp == "fp16" else None


def networks(targs: argparse.Namespace, encoder, head, compiled) -> Networks:
    """The encoder and head as the training script's step runs them under ``targs``."""
    return Networks(
        encoder,
        head,
        compiled=compiled,
        amp_dtype=training.AMP_DTYPES[targs.amp],
        channels_last=targs.channels_last,
    )


def step_timings(args, device, images: torch.Tensor) -> dict[str, float]:
    """Seconds per step for the bound, the plain step and the penalty steps, on one batch of
    ``images`` (uint8 CIFAR-10)."""
    targs = training_args(args, "cifar10")
    encoder, head, optimizer, _ = training.build_model(targs, DATASETS["cifar10"].stem, device)
    encoder.train()
    head.train()
    gen = torch.Generator(device).manual_seed(0)
    views = NaturalViews("cifar10", 32, targs.colour_strength, generator=gen)
    x = images[: args.batch_size].to(device)
    view1, _ = views.augment(x)
    view2, _ = views.augment(x)
    if targs.channels_last:
        view1 = view1.contiguous(memory_format=torch.channels_last)
        view2 = view2.contiguous(memory_format=torch.channels_last)
    params = [*encoder.parameters()]
    compiled = torch.compile(encoder) if targs.compile else None
    fast = compiled if compiled is not None else encoder
    nets = networks(targs, encoder, head, compiled)
    scaler = make_scaler(targs, device)

    def bound() -> None:
        for view in (view1, view2):
            with autocast(targs, device):
                out = fast(view).float().sum()
            grads = torch.autograd.grad(out, params)
        del grads

    def step(weight: float, scale: str = "none") -> None:
        training.training_step(
            nets, views, optimizer, x, x,
            temperature=targs.temperature, penalty_weight=weight, gp_upper_limit=1e9,
            gp_normalization=True, gp_scale=scale, scaler=scaler,
        )  # fmt: skip

    times = {
        "bound": seconds_per_call(bound, args.steps, device),
        "plain": seconds_per_call(lambda: step(0.0), args.steps, device),
    }
    # In turns, each first in every other turn, so that a drift of the machine's speed or the
    # order reaches both alike.
    turns: dict[str, list[float]] = {"none": [], "spread": []}
    for turn in range(4):
        for scale in ("none", "spread")[:: 1 if turn % 2 == 0 else -1]:
            timed = functools.partial(step, 0.1, scale)
            turns[scale].append(seconds_per_call(timed, args.steps, device))
    times["penalty"], times["relative"] = min(turns["none"]), min(turns["spread"])
    for k in args.gp_every:
        # One penalised step and K − 1 plain ones: the mean step of a --gp-every K run.
        times[f"penalty_gp_every_{k}"] = (times["penalty"] + (k - 1) * times["plain"]) / k
    return times


def epoch_seconds(args, device, dataset: str, pretrain: torch.Tensor) -> float:
    """`train_one_epoch` over ``pretrain`` (the data path included), without the penalty."""
    targs = training_args(args, dataset)
    info = DATASETS[dataset]
    data = DatasetBundle(info, pretrain, None, None)
    encoder, head, optimizer, _ = training.build_model(targs, info.stem, device)
    # The views of the training script's defaults (no blur for either dataset), one generator
    # for the warm-up and the timed epoch.
    views = info.views(generator=torch.Generator(device).manual_seed(0))
    compiled = torch.compile(encoder) if targs.compile else None
    nets = networks(targs, encoder, head, compiled)
    warm = DatasetBundle(info, pretrain[: args.batch_size], None, None)
    scaler = make_scaler(targs, device)
    epoch = training.train_one_epoch
    epoch(nets, views, optimizer, warm, targs, Position(0), device, scaler=scaler)
    sync(device)
    start = time.perf_counter()
    epoch(nets, views, optimizer, data, targs, Position(0), device, scaler=scaler)
    sync(device)
    return time.perf_counter() - start


class PILPairs(torch.utils.data.Dataset):
    """The naive data path: each image to PIL, then two independently transformed views, one
    image at a time in a worker (torchvision transforms, bicubic crop)."""

    def __init__(self, images: torch.Tensor, strength: float = 0.5) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()
        mean, std = DATASET_STATS["cifar10"]
        s = strength
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(
                    32, interpolation=transforms.InterpolationMode.BICUBIC
                ),
                transforms.RandomHorizontalFlip(),
                transforms.RandomApply(
                    [transforms.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8
                ),
                transforms.RandomGrayscale(p=0.2),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = Image.fromarray(np.asarray(self.images[i]))
        return self.transform(image), self.transform(image)


def naive_epoch_seconds(args, device, pretrain: torch.Tensor) -> float:
    targs = training_args(args, "cifar10")
    encoder, head, optimizer, _ = training.build_model(targs, DATASETS["cifar10"].stem, device)
    encoder.train()
    head.train()
    # The same encoder as the other epochs (compiled with --compile): only data and loss differ.
    fast = torch.compile(encoder) if targs.compile else encoder
    scaler = make_scaler(targs, device)
    loader = torch.utils.data.DataLoader(
        PILPairs(pretrain),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.num_workers,
        persistent_workers=False,
    )

    def run(batches) -> None:
        for v1, v2 in batches:
            v1, v2 = v1.to(device), v2.to(device)
            if targs.channels_last:
                v1 = v1.contiguous(memory_format=torch.channels_last)
                v2 = v2.contiguous(memory_format=torch.channels_last)
            with autocast(targs, device):
                loss = pairwise_nt_xent(head(fast(v1)), head(fast(v2)), targs.temperature)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            loss.item()  # the usual per-step logging

    run([next(iter(loader))])  # warm-up, as for the other epochs
    sync(device)
    start = time.perf_counter()
    run(loader)  # the workers' start-up is part of an epoch, as in a real run
    sync(device)
    return time.perf_counter() - start


def main(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    n = args.epoch_steps * args.batch_size
    if n > 100_000:
        raise UsageError(f"--epoch-steps × --batch-size is {n:,}; Spirograph has 100,000 images")
    images, source = cifar_images(args, n)
    print(
        f"{args.arch}, batch {args.batch_size}, device {device}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}; CIFAR-10 images: {source}"
    )
    times = step_timings(args, device, images)
    # Each epoch below resets the peak (utils.run.StepMeter): read the steps' peak first.
    step_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    # The smallest Spirograph that `load_dataset` gives has one test image (unused here).
    spiro = load_dataset("spirograph", proportion=max(n / 100_000, 5e-5)).pretrain[:n]
    epochs = {
        "epoch_spirograph": epoch_seconds(args, device, "spirograph", spiro),
        "epoch_cifar10": epoch_seconds(args, device, "cifar10", images),
        "epoch_cifar10_naive": naive_epoch_seconds(args, device, images),
    }
    rate = {k: args.batch_size / v for k, v in times.items()}
    rate.update({k: n / v for k, v in epochs.items()})
    ratios = {
        "plain_over_bound": times["bound"] / times["plain"],
        "penalty_over_plain": times["penalty"] / times["plain"],
        "relative_over_penalty": times["relative"] / times["penalty"],
        **{
            f"penalty_over_plain_gp_every_{k}": times[f"penalty_gp_every_{k}"] / times["plain"]
            for k in args.gp_every
        },
        "epoch_speedup_vs_naive": epochs["epoch_cifar10_naive"] / epochs["epoch_cifar10"],
    }
    print(f"{'measurement':32}{'images/s':>10}{'s/step':>10}")
    for key, value in rate.items():
        print(f"{key:32}{value:10.1f}{args.batch_size / value:10.3f}")
    for key, value in ratios.items():
        print(f"{key:32}{value:10.3f}")
    summary = {
        "arch": args.arch,
        "width": args.width,
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cifar": source,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "amp": args.amp,
        "images_per_s": {k: round(v, 2) for k, v in rate.items()},
        **{k: round(v, 3) for k, v in ratios.items()},
    }
    if device.type == "cuda":
        # The steps' (the penalty step's, usually) and the last two epochs' peaks.
        epoch_peak = torch.cuda.max_memory_allocated(device)
        summary["peak_gpu_memory_gb"] = round(max(step_peak, epoch_peak) / 2**30, 3)
        summary["peak_gpu_memory_gb_steps"] = round(step_peak / 2**30, 3)
        summary["gpu"] = torch.cuda.get_device_name(device)
    if args.loss_memory:
        summary["loss_memory"] = loss_memory(args.loss_memory)
        print(f"NT-Xent peak memory: {summary['loss_memory']}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
