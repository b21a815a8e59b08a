"""One timed CIFAR-10 epoch of the training loop, without and with the penalty.

    python3 -m benchmarks.gpu_epoch --cifar /path/to/cifar10-jpeg --device cuda

The 50,000 training images are decoded once into memory as uint8 (timed apart); each epoch is
`invariance_by_gradient.train_one_epoch` itself: batches indexed from memory and copied to the
device, on-device augmentation, encoder, head, NT-Xent, the penalty (λ = --lambda-gp, upper limit
1000 so that it always acts) and LARS. Two warm-up steps before each epoch (cuDNN's algorithm
search, the allocator) are not timed. Reports seconds per epoch, images per second and the peak
GPU memory of each epoch; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import invariance_by_gradient as training
from benchmarks.throughput import sync
from datasets.natural import load_cifar
from datasets.sources import DATASETS, DatasetBundle
from models.invclr import Networks
from utils.cli import DefaultsHelpFormatter, UsageError, int_at_least, resolve_device, run_cli
from utils.run import NonFiniteLoss, Position


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    p.add_argument(
        "--cifar", type=Path, required=True, help="CIFAR-10 folder (JPEG tree or pickles)"
    )
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    p.add_argument("--batch-size", type=int_at_least(2), default=512, help="images per step")
    p.add_argument(
        "--images", type=int_at_least(2), default=None, help="use the first N (default: all)"
    )
    p.add_argument("--lambda-gp", type=float, default=0.1, help="weight of the penalised epoch")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    return p


def timed_epoch(data: DatasetBundle, args: argparse.Namespace, device, weight: float) -> dict:
    flags = ["--dataset", "cifar10", "--arch", args.arch, "--batch-size", str(args.batch_size)]
    flags += ["--lambda-gp", str(weight), "--gp-upper-limit", "1000", "--num-workers", "0"]
    targs = training.get_args_parser().parse_args([*flags, "--log-interval", str(10**9)])
    torch.manual_seed(0)
    encoder, head, optimizer, _ = training.build_model(targs, "cifar", device)
    nets = Networks(encoder, head)
    views = DATASETS["cifar10"].views(generator=torch.Generator(device).manual_seed(0))
    warm = DatasetBundle(data.info, data.pretrain[: 2 * args.batch_size], None, None)
    training.train_one_epoch(nets, views, optimizer, warm, targs, Position(0), device)
    sync(device)
    try:  # the row's time and rate end with a read of the device's sums: the work is done
        row = training.train_one_epoch(nets, views, optimizer, data, targs, Position(0), device)
    except NonFiniteLoss as error:  # a result to report, not a reason to lose the other epoch
        return {"non_finite_loss_at_step": error.step}
    peak = row.get("peak_gpu_memory_gb")
    return {
        "seconds": round(row["time_s"], 2),
        "images_per_s": round(row["images_per_s"], 1),
        "loss": round(row["loss"], 4),
        "peak_gpu_memory_gb": None if peak is None else round(peak, 3),
    }


def main(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    start = time.perf_counter()
    train, _ = load_cifar(args.cifar, "cifar10", 10)
    decode = time.perf_counter() - start
    data = DatasetBundle(DATASETS["cifar10"], train.inputs[: args.images], None, None)
    if len(data.pretrain) < args.batch_size:
        raise UsageError(
            f"--images {len(data.pretrain)} is less than one batch of --batch-size "
            f"{args.batch_size}: an epoch would have no step; lower --batch-size"
        )
    summary = {
        "arch": args.arch,
        "batch_size": args.batch_size,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "images": len(data.pretrain),
        "decode_s": round(decode, 2),
    }
    for name, weight in (("plain", 0.0), ("penalty", args.lambda_gp)):
        summary[name] = row = timed_epoch(data, args, device, weight)
        print(f"{name}: {json.dumps(row)}", flush=True)  # before the next epoch: a timeout keeps it
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
