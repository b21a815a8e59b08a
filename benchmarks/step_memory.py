"""The memory one training step needs per image, on the CPU: SimCLR and the penalty at each
width, so that a user can work out the largest --batch-size that fits (docs/checkpoints.md).

    python3 -m benchmarks.step_memory                      # widths 0.25 and 1, batches 32 and 128
    python3 -m benchmarks.step_memory --widths 0.25 --batches 16 64

Each (width, method, batch) runs in a fresh process: the training script's encoder, head and
LARS (`invariance_by_gradient.build_model`) on random CIFAR-sized images, then one
`invariance_by_gradient.training_step`, the first, which also makes the optimizer's state. It
reports the process's peak resident memory and the peak the step adds to it; the growth
between the two batch sizes, over their difference, is the memory per image, and what is left
at the smaller batch is what does not grow with it. The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource

import torch

import invariance_by_gradient as training
from augmentation.views import NaturalViews
from benchmarks.loss_memory import peak_added_mib
from benchmarks.throughput import networks, training_args
from datasets.sources import DATASETS
from models import ARCHITECTURES
from utils.cli import int_at_least, run_cli, width_multiplier

METHODS = {"simclr": 0.0, "penalty": 0.1}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="resnet18", help="(resnet18)")
    p.add_argument("--widths", type=width_multiplier, nargs="+", default=[0.25, 1.0],
                   help="channel multipliers (0.25 1)")  # fmt: skip
    p.add_argument("--batches", type=int_at_least(2), nargs=2, default=[32, 128],
                   metavar=("SMALL", "LARGE"), help="the two batch sizes (32 128)")  # fmt: skip
    return p


def _one_step(arch: str, width: float, method: str, batch: int, queue) -> None:
    """In a fresh process: (peak MiB of the process, peak MiB the step added)."""
    torch.set_num_threads(1)
    flags = argparse.Namespace(arch=arch, width=width, batch_size=batch, channels_last=False,
                               compile=False, amp="off")  # fmt: skip
    targs = training_args(flags, "cifar10")
    device = torch.device("cpu")
    encoder, head, optimizer, _ = training.build_model(targs, DATASETS["cifar10"].stem, device)
    nets = networks(targs, encoder, head, None)
    nets.train()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=gen)
    views = NaturalViews("cifar10", 32, targs.colour_strength, generator=gen)

    def step() -> None:
        training.training_step(
            nets, views, optimizer, images, images, temperature=targs.temperature,
            penalty_weight=METHODS[method], gp_upper_limit=1e9,
        )  # fmt: skip

    added, _ = peak_added_mib(step)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    queue.put((round(peak, 1), round(added, 1)))


def main(args: argparse.Namespace) -> dict:
    ctx = multiprocessing.get_context("spawn")
    small, large = sorted(args.batches)
    rows = []
    for width in args.widths:
        for method in METHODS:
            measured = {}
            for batch in (small, large):
                queue = ctx.Queue()
                proc = ctx.Process(target=_one_step, args=(args.arch, width, method, batch, queue))
                proc.start()
                measured[batch] = queue.get()
                proc.join()
            per_image = (measured[large][1] - measured[small][1]) / (large - small)
            row = {
                "width": width, "method": method,
                **{f"peak_mib_batch_{b}": measured[b][0] for b in (small, large)},
                **{f"step_mib_batch_{b}": measured[b][1] for b in (small, large)},
                "mib_per_image": round(per_image, 2),
                "fixed_mib": round(measured[small][0] - per_image * small, 1),
            }  # fmt: skip
            rows.append(row)
            print(
                f"{args.arch} width {width:g}, {method}: peak {measured[small][0]:.0f} MiB at "
                f"batch {small}, {measured[large][0]:.0f} MiB at {large}; {per_image:.2f} MiB "
                f"per image above {row['fixed_mib']:.0f} MiB"
            )
    summary = {"arch": args.arch, "device": "cpu", "threads": 1, "rows": rows}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
