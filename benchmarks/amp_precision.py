"""How far mixed precision moves the gradient penalty and NT-Xent, against float64.

    python3 -m benchmarks.amp_precision --batch-size 32 --device cpu

For one batch of CIFAR-sized random images and a fresh seeded encoder, it computes in float64
(the reference), float32, and float32 under autocast with bfloat16 and float16:
- the penalty (spec section 5) of the first view and the gradient of that penalty with respect
  to the encoder's weights, the penalty's double backward included;
- NT-Xent of both views through the head and its weight gradient.
It prints, for each precision, the relative error of each value and each gradient (‖g − g64‖ /
‖g64‖), and for scale the relative difference between two float64 penalty gradients that differ
only in their Rademacher signs and fresh parameter draws (the estimator's own noise). The last
line is one JSON object. `--amp` in the training script keeps the penalised view in float32
because of what this measures (see docs/mixed-precision.md).
"""

from __future__ import annotations

import argparse
import json

import torch

from augmentation.views import NaturalViews
from models import ARCHITECTURES, PENALTY_SAMPLES, ProjectionHead, ResNetEncoder
from models.invclr import gradient_penalty, nt_xent, rademacher
from utils.cli import int_at_least, resolve_device, run_cli, width_multiplier

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="resnet18", help="(resnet18)")
    p.add_argument("--batch-size", type=int_at_least(2), default=32, help="images (32)")
    p.add_argument("--width", type=width_multiplier, default=1.0,
                   help="the training script's --width (1)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (cpu)")
    p.add_argument("--seed", type=int, default=0, help="(0)")
    return p


def _flat_grad(modules: list[torch.nn.Module]) -> torch.Tensor:
    return torch.cat(
        [p.grad.double().flatten() for m in modules for p in m.parameters() if p.grad is not None]
    )


def main(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    encoder = ResNetEncoder(args.arch, "cifar", args.width).to(device)
    head = ProjectionHead(encoder.representation_dim).to(device)
    images = torch.randint(
        0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8,
        generator=torch.Generator().manual_seed(args.seed),
    ).to(device)  # fmt: skip

    def seeded_views() -> NaturalViews:
        """The view maker with its generator at ``args.seed``: every call, the same views."""
        return NaturalViews("cifar10", 32, generator=torch.Generator(device).manual_seed(args.seed))

    def penalty(dtype: torch.dtype, amp: torch.dtype | None, draw_seed: int = 1):
        encoder.to(dtype).zero_grad(set_to_none=True)
        views = seeded_views()
        view, theta = views.augment(images, requires_grad=True)
        with torch.autocast(device.type, amp, enabled=amp is not None):
            h = encoder(view.to(dtype))
        h = h.to(dtype)
        # The signs first, then the K fresh draws per image, both from one generator.
        draws = torch.Generator(device).manual_seed(draw_seed)
        signs = rademacher(h.shape, device=device, dtype=dtype, generator=draws)
        b, p = theta.shape
        fresh = views.sample_nuisance(PENALTY_SAMPLES * b, device=device, generator=draws)
        value = gradient_penalty(
            h, theta, fresh.reshape(PENALTY_SAMPLES, b, p), signs, upper_limit=float("inf")
        )
        value.backward()
        return value.item(), _flat_grad([encoder])

    def contrastive(dtype: torch.dtype, amp: torch.dtype | None):
        for m in (encoder, head):
            m.to(dtype).zero_grad(set_to_none=True)
        views = seeded_views()
        v1, _ = views.augment(images)
        v2, _ = views.augment(images)
        with torch.autocast(device.type, amp, enabled=amp is not None):
            loss = nt_xent(head(encoder(v1.to(dtype))), head(encoder(v2.to(dtype))), 0.5)
        loss.to(dtype).backward()
        return loss.item(), _flat_grad([encoder, head])

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    # Batch norm updates its running statistics in every forward; they do not enter these
    # train-mode values, so the repeated forwards below all see the same function.
    ref_penalty, ref_penalty_grad = penalty(torch.float64, None)
    _, other_draw_grad = penalty(torch.float64, None, draw_seed=2)
    ref_loss, ref_loss_grad = contrastive(torch.float64, None)
    rows = {}
    for name, amp in PRECISIONS.items():
        p, pg = penalty(torch.float32, amp)
        c, cg = contrastive(torch.float32, amp)
        rows[name] = {
            "penalty_rel_error": abs(p - ref_penalty) / ref_penalty,
            "penalty_grad_rel_error": rel(pg, ref_penalty_grad),
            "ntxent_rel_error": abs(c - ref_loss) / ref_loss,
            "ntxent_grad_rel_error": rel(cg, ref_loss_grad),
        }
    noise = rel(other_draw_grad, ref_penalty_grad)

    print(f"{args.arch}, batch {args.batch_size}, device {device}; errors relative to float64")
    print(f"{'precision':<10}{'penalty':>10}{'its grad':>10}{'NT-Xent':>10}{'its grad':>10}")
    for name, r in rows.items():
        print(
            f"{name:<10}{r['penalty_rel_error']:>10.2e}{r['penalty_grad_rel_error']:>10.2e}"
            f"{r['ntxent_rel_error']:>10.2e}{r['ntxent_grad_rel_error']:>10.2e}"
        )
    print(f"penalty gradient, another draw of signs and parameters (float64): {noise:.2e}")
    summary = {
        "arch": args.arch,
        "batch_size": args.batch_size,
        "device": str(device),
        "float64_penalty": ref_penalty,
        "float64_ntxent": ref_loss,
        "errors": rows,
        "penalty_grad_other_draw": noise,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
