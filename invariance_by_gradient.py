"""Train an encoder with SimCLR and the InvCLR gradient penalty (spec sections 3-6).

    python3 invariance_by_gradient.py --dataset cifar10 --arch resnet50 --lambda-gp 1e-1 \
        --cosine-anneal --num-epochs 1000

`<checkpoint-dir>/<filename>.pth` holds the latest state: it is written after every epoch, every
`--save-every-steps` steps, and on SIGTERM or Ctrl-C (the step in progress finishes first); at the
end it is the trained model. Every `--save-freq` epochs `<filename>_epoch<NNN>.pth` is kept too.
`--resume FILE` continues a run exactly where its checkpoint left it, mid-epoch included.

    torchrun --nproc_per_node 8 invariance_by_gradient.py --dataset cifar10 ...

runs one process per GPU on the same global `--batch-size` (utils/distributed.py); only rank 0
writes and prints.
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from augmentation.views import NaturalViews, SpirographViews
from datasets.sources import DATASETS, DatasetBundle, load_dataset
from models import ARCHITECTURES, ProjectionHead, ResNetEncoder
from models.sync_batchnorm import convert_sync_batchnorm
from utils.checkpoint import (
    CheckpointError,
    all_finite,
    ensure_writable,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_checkpoint,
    save_checkpoint,
)
from utils.cli import (
    DefaultsHelpFormatter,
    TrainingError,
    UsageError,
    add_runtime_args,
    file_stem,
    float_at_least,
    int_at_least,
    proportion,
    resolve_device,
    run_cli,
    seed_value,
    width_multiplier,
)
from utils.distributed import (
    ONE_PROCESS,
    Shard,
    any_process,
    average_gradients,
    broadcast_parameters,
    close_distributed,
    gather_rows,
    init_distributed,
    launched_shard,
    mean_over_processes,
)
from utils.evaluation import DEFAULT_REG_WEIGHT, linear_probe
from utils.gradient_penalty import gradient_penalty, rademacher
from utils.lars import LARS, param_groups_excluding_bn_bias
from utils.metrics import TensorBoardLog, append_metrics, metrics_path, rewrite_metrics
from utils.ntxent import nt_xent
from utils.preview import write_preview
from utils.rng import capture_rng, restore_rng
from utils.schedule import CosineAnnealingWithLinearRampLR
from utils.signals import StopRequest, ignore_sigint_in_worker

PENALTY_SAMPLES = 100  # K of spec section 5
# What --resume needs from a checkpoint; evaluation-only files lack some.
RESUME_KEYS = ("args", "encoder", "head", "optimizer", "results", "rng")
# Flags that may differ when a run is resumed; all others define the run and come from the
# checkpoint (giving them a different value on the command line is an error).
RESUME_OVERRIDABLE = {
    "resume",
    "num_workers",
    "device",
    "test_freq",
    "save_freq",
    "cut_off",
    "checkpoint_dir",
    "filename",
    "git",
    "log_interval",
    "channels_last",
    "compile",
    "amp",
    "save_every_steps",
    "overwrite",
    "tensorboard",
    "preview",
}
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train an encoder with SimCLR and the InvCLR gradient penalty.",
        formatter_class=DefaultsHelpFormatter,
    )
    nonneg = float_at_least(0.0)
    positive = float_at_least(0.0, strict=True)
    p.add_argument(
        "--dataset",
        default="cifar10",
        choices=sorted(DATASETS),
        help="training data; folders come from dataset-paths.json",
    )
    p.add_argument(
        "--arch", default="resnet50", choices=sorted(ARCHITECTURES), help="encoder architecture"
    )
    p.add_argument(
        "--width",
        type=width_multiplier,
        default=1.0,
        help="multiplier of every stage's channel count (1 is the paper's network; 0.25 keeps a "
        "quarter of the channels, a compute reduction for small-budget runs)",
    )
    p.add_argument(
        "--base-lr",
        type=nonneg,
        default=1.5,
        help="base learning rate; the rate used is base-lr x batch-size / 256",
    )
    p.add_argument(
        "--num-epochs",
        type=int_at_least(1),
        default=1000,
        help="epochs the learning-rate schedule spans",
    )
    p.add_argument(
        "--cut-off",
        type=int_at_least(1),
        default=None,
        help="stop after this many epochs while the schedule still spans --num-epochs "
        "(default: train all --num-epochs)",
    )
    p.add_argument(
        "--cosine-anneal",
        action="store_true",
        help="10-epoch linear ramp then cosine decay to 0; constant rate when off",
    )
    p.add_argument(
        "--batch-size",
        type=int_at_least(2),
        default=512,
        help="images per step: the global batch, split evenly among the processes under "
        "torchrun (the learning rate and the penalty's mean are over it)",
    )
    p.add_argument(
        "--sync-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch-norm statistics over the global batch rather than each process's share "
        "(default: on under torchrun with more than one process; nothing to sync otherwise)",
    )
    p.add_argument("--temperature", type=positive, default=0.5, help="NT-Xent temperature")
    p.add_argument("--momentum", type=nonneg, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=nonneg, default=1e-6, help="SGD weight decay")
    p.add_argument("--trust-coef", type=nonneg, default=1e-3, help="LARS trust coefficient")
    p.add_argument(
        "--lars-exclude-bn-bias",
        action="store_true",
        help="leave batch-norm and bias parameters out of LARS adaptation and weight "
        "decay (SimCLR's TensorFlow choice); off: all adapted, as torchlars",
    )
    p.add_argument(
        "--lambda-gp",
        type=nonneg,
        default=0.0,
        help="weight of the gradient penalty; 0 turns it off",
    )
    p.add_argument(
        "--gp-upper-limit",
        type=positive,
        default=1.0,
        help="the penalty is clamped from above at this value",
    )
    p.add_argument(
        "--gp-every",
        type=int_at_least(1),
        default=1,
        help="compute the penalty every K-th step with weight K·lambda (lazy regularisation); "
        "1 is the paper's exact estimator",
    )
    p.add_argument(
        "--no-gp-normalization",
        action="store_true",
        help="penalise the raw representation h instead of h / ||h||",
    )
    p.add_argument(
        "--colour-strength",
        type=nonneg,
        default=0.5,
        help="colour distortion strength s (1.0 is SimCLR's ImageNet setting)",
    )
    p.add_argument(
        "--blur",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Gaussian blur of the training views (default: on for imagenet only)",
    )
    p.add_argument(
        "--proportion",
        type=proportion,
        default=1.0,
        help="fraction of the labelled training set kept, stratified by class "
        "(Spirograph: of both its train and test sets)",
    )
    p.add_argument(
        "--seed",
        type=seed_value,
        default=0,
        help="seed of initialisation, data order and augmentation",
    )
    add_runtime_args(p)
    p.add_argument(
        "--test-freq",
        type=int_at_least(0),
        default=10,
        help="fit the L-BFGS linear probe every this many epochs; 0 turns it off",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC memory format for the encoder's weights and inputs (usually faster on "
        "GPUs; measure with benchmarks/throughput.py)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the encoder for the views without the penalty (the penalised view "
        "stays eager: compiled graphs have no double backward); the first steps compile",
    )
    p.add_argument(
        "--amp",
        choices=list(AMP_DTYPES),
        default="off",
        help="mixed precision for the views without the penalty, the head and NT-Xent (the "
        "penalised view stays float32); fp16 adds loss scaling. Meant for GPUs; on a CPU bf16 "
        "pays only with bfloat16 matrix units (AMX) and is far slower without them",
    )
    p.add_argument(
        "--log-interval",
        type=int_at_least(1),
        default=10,
        help="refresh the progress bar every this many steps; only then do values leave the "
        "device (a host synchronisation)",
    )
    p.add_argument(
        "--save-freq",
        type=int_at_least(1),
        default=100,
        help="write <filename>_epoch<NNN>.pth every this many epochs",
    )
    p.add_argument(
        "--save-every-steps",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help="also write <filename>.pth every K steps, so that a crash costs at most K steps "
        "(it is always written after every epoch)",
    )
    p.add_argument(
        "--filename", type=file_stem, default="output", help="checkpoint name stem (no folders)"
    )
    p.add_argument("--checkpoint-dir", default="checkpoint", help="folder for checkpoints")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run even if <filename>.pth exists (it is replaced at the first save)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="FILE",
        help="continue the run saved in FILE (a path, or a name in --checkpoint-dir)",
    )
    p.add_argument(
        "--git",
        action="store_true",
        help="also record `git diff` in the checkpoint (the hash is always recorded)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard events to <checkpoint-dir>/<filename>.tensorboard/ (needs "
        "the tensorboard package; <filename>.metrics.jsonl is written either way)",
    )
    p.add_argument(
        "--preview",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="write <checkpoint-dir>/<filename>.preview.png, N training images beside their two "
        "views, and exit without training",
    )
    return p


def git_info(with_diff: bool) -> dict[str, str | None]:
    """The commit of this code and, when asked, the uncommitted diff (None outside a git repo)."""

    def run(*cmd: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *cmd], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    return {
        "hash": commit.strip() if commit else None,
        "diff": run("diff", "HEAD") if with_diff else None,
    }


def merge_resumed_args(args: argparse.Namespace, saved: dict[str, Any]) -> argparse.Namespace:
    """The checkpoint's run arguments, with the command line's overridable flags on top."""
    defaults = vars(get_args_parser().parse_args([]))
    saved = {"width": 1.0, **saved}  # checkpoints from before --width hold the full network
    merged = dict(saved)
    for key, value in vars(args).items():
        explicit = value != defaults.get(key)
        if key in RESUME_OVERRIDABLE or key not in saved:
            if explicit or key not in saved:
                merged[key] = value
        elif explicit and value != saved[key]:
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"{flag} {value} conflicts with the resumed run's {saved[key]}; drop {flag} to "
                "continue that run, or start a new one"
            )
    return argparse.Namespace(**{k: merged[k] for k in defaults})


def build_views(args: argparse.Namespace, data: DatasetBundle) -> NaturalViews | SpirographViews:
    if data.name == "spirograph":
        return SpirographViews()
    blur = args.blur if args.blur is not None else data.name == "imagenet"
    return NaturalViews(
        data.name, data.image_size, args.colour_strength, blur, crop=data.name != "imagenet"
    )


def build_model(
    args: argparse.Namespace, data: DatasetBundle, device: torch.device, sync_bn: bool = False
) -> tuple[nn.Module, nn.Module, LARS, CosineAnnealingWithLinearRampLR | None]:
    """Encoder, projection head, LARS(SGD) at base × batch / 256, and the optional schedule
    (attached to the wrapped SGD). ``sync_bn`` swaps every batch norm for `SyncBatchNorm`."""
    encoder = ResNetEncoder(args.arch, data.stem, args.width)
    head = ProjectionHead(encoder.representation_dim)
    if sync_bn:
        encoder, head = convert_sync_batchnorm(encoder), convert_sync_batchnorm(head)
    encoder, head = encoder.to(device), head.to(device)
    if args.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    lr = args.base_lr * args.batch_size / 256
    if args.lars_exclude_bn_bias:
        groups = param_groups_excluding_bn_bias([encoder, head], args.weight_decay)
    else:
        groups = [{"params": [*encoder.parameters(), *head.parameters()]}]
    sgd = torch.optim.SGD(groups, lr=lr, momentum=args.momentum, weight_decay=args.weight_decay)
    optimizer = LARS(sgd, eps=1e-8, trust_coef=args.trust_coef)
    scheduler = (
        CosineAnnealingWithLinearRampLR(sgd, args.num_epochs) if args.cosine_anneal else None
    )
    return encoder, head, optimizer, scheduler


def pretrain_batches(
    data: DatasetBundle,
    args: argparse.Namespace,
    epoch: int,
    start_step: int = 0,
    shard: Shard = ONE_PROCESS,
):
    """Pairs of inputs for the two views, in an order fixed by (seed, epoch), from batch
    ``start_step`` on (a run resumed mid-epoch sees the rest of the same order); the last partial
    batch is dropped so that batch norm and NT-Xent always see ``batch_size`` images. Each
    process gets its ``shard`` of every global batch: disjoint shares of the same order."""
    order = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
    perm = torch.randperm(len(data.pretrain), generator=order)
    num_steps = perm.numel() // args.batch_size
    batches = perm[: num_steps * args.batch_size].view(num_steps, args.batch_size)
    mine = shard.rows(batches, dim=1)[start_step:]
    if isinstance(data.pretrain, torch.Tensor):
        for indices in mine:
            batch = data.pretrain[indices]
            yield batch, batch
    else:
        data.pretrain.epoch = epoch  # per-image crop seeds (datasets/imagenet.py)
        loader = torch.utils.data.DataLoader(
            data.pretrain,
            batch_size=mine.shape[1],
            sampler=mine.reshape(-1).tolist(),
            drop_last=True,
            num_workers=args.num_workers,
            # Only the workers' base seed comes from it: keeps the global generator untouched.
            generator=order,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=ignore_sigint_in_worker,
        )
        for view1, view2, _ in loader:
            yield view1, view2


def training_step(
    encoder: nn.Module,
    head: nn.Module,
    optimizer: LARS,
    views,
    x1: Tensor,
    x2: Tensor,
    *,
    temperature: float,
    penalty_weight: float,
    gp_upper_limit: float,
    gp_normalization: bool,
    generator: torch.Generator,
    channels_last: bool = False,
    compiled_encoder: nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    shard: Shard = ONE_PROCESS,
) -> Tensor:
    """One optimisation step on a batch (spec section 5); ``penalty_weight`` 0 skips the penalty.

    Returns the detached (contrastive loss, penalty, total loss, 1 if the penalty was at its clamp
    else 0) as one device tensor, so that the step never waits for the device: the caller reads it
    when it chooses to.

    ``compiled_encoder`` (``torch.compile`` of ``encoder``, sharing its weights) encodes every view
    whose graph is differentiated once; the penalised view stays eager, because the penalty's
    double backward cannot go through a compiled graph.

    ``amp_dtype`` (bfloat16 or float16) runs the other view, the head and NT-Xent under autocast;
    the penalised view stays in float32, so the penalty and its double backward are computed
    exactly as without it (in low precision they drift: see the README). ``scaler`` (float16)
    scales the loss and skips steps whose gradients overflow.

    Under `torchrun`, ``x1`` and ``x2`` are this process's ``shard`` of the global batch; the
    step is then the one a single process would take on the global batch (utils/distributed.py):
    its random draws, NT-Xent over all projections, the penalty's mean over all images, and the
    averaged gradients. The returned values are the global ones, the same on every process.
    """
    device = x1.device
    use_penalty = penalty_weight > 0
    view1, theta1 = views.augment(x1, generator=generator, requires_grad=use_penalty, shard=shard)
    view2, _ = views.augment(x2, generator=generator, shard=shard)
    if channels_last:
        view1 = view1.contiguous(memory_format=torch.channels_last)
        view2 = view2.contiguous(memory_format=torch.channels_last)

    def low_precision(enabled: bool = True):
        return torch.autocast(device.type, amp_dtype, enabled=enabled and amp_dtype is not None)

    def encode(view: Tensor, penalised: bool) -> Tensor:
        module = encoder if penalised or compiled_encoder is None else compiled_encoder
        with low_precision(enabled=not penalised):
            return module(view)

    if compiled_encoder is not None and use_penalty:
        # The compiled forward writes batch-norm running statistics back with a versioned copy,
        # which would invalidate the eager graph's saved buffers if it ran second; so view 2 goes
        # first here (the running statistics see the views in the other order).
        h2 = encode(view2, penalised=False)
        h1 = encode(view1, penalised=True)
    else:
        h1, h2 = encode(view1, penalised=use_penalty), encode(view2, penalised=False)
    with low_precision():
        z1, z2 = gather_rows(head(h1)), gather_rows(head(h2))
        contrastive = nt_xent(z1, z2, temperature).float()
    if use_penalty:
        b = h1.shape[0]

        def fresh_nuisance(n: int) -> Tensor:
            # The penalty lays its n = K·b draws out as (K, b, P): cut the global (K, B, P).
            drawn = views.sample_nuisance(n * shard.world, device=device, generator=generator)
            return shard.rows(drawn.view(n // b, b * shard.world, -1), dim=1).reshape(n, -1)

        signs = shard.draw(
            lambda n: rademacher(
                (n, h1.shape[1]), device=device, dtype=h1.dtype, generator=generator
            ),
            b,
        )
        penalty = gradient_penalty(
            h1,
            theta1,
            fresh_nuisance,
            num_samples=PENALTY_SAMPLES,
            upper_limit=gp_upper_limit,
            normalize=gp_normalization,
            signs=signs,
            combine=mean_over_processes,
        )
        # At the clamp the penalty passes no gradient: training counts how often that happens.
        clamped = (penalty >= gp_upper_limit).float()
    else:
        penalty = clamped = torch.zeros((), device=device)
    loss = contrastive + penalty_weight * penalty
    optimizer.zero_grad(set_to_none=True)
    parameters = [*encoder.parameters(), *head.parameters()]
    if scaler is None:
        loss.backward()
        average_gradients(parameters)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        average_gradients(parameters)
        scaler.step(optimizer)  # unscales first; skips the step if a gradient is not finite
        scaler.update()
    return torch.stack([contrastive, penalty, loss, clamped]).detach()


@dataclass
class Position:
    """Where a run stands: ``step`` steps of ``epoch`` done, with that epoch's running sums so
    far (contrastive loss, penalty, total loss, penalised steps at the clamp), penalised steps and
    seconds. Stored in checkpoints as plain types (``"next"``), so a run resumes mid-epoch where
    it stopped. Checkpoints written before the clamp was counted hold three sums: that epoch's
    count is then unknown (NaN, reported as null) if they were saved mid-epoch."""

    epoch: int
    step: int = 0
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])

    def __post_init__(self) -> None:
        if len(self.totals) == 3:  # unknown mid-epoch; nothing to count yet at an epoch's start
            self.totals = [*self.totals, math.nan if self.step else 0.0]

    penalty_steps: int = 0
    seconds: float = 0.0


class NonFiniteLoss(Exception):
    """The loss was NaN or infinite at global step ``step`` (counted from 0)."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step


class Stopped(Exception):
    """A stop was requested (SIGTERM, SIGINT) and the position saved mid-epoch."""


def train_one_epoch(
    encoder: nn.Module,
    head: nn.Module,
    optimizer: LARS,
    views,
    data: DatasetBundle,
    args: argparse.Namespace,
    epoch: int,
    device: torch.device,
    generator: torch.Generator,
    compiled_encoder: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
    *,
    position: Position | None = None,
    save: Callable[[Position], None] | None = None,
    stop: StopRequest | None = None,
    shard: Shard = ONE_PROCESS,
) -> dict[str, float]:
    """One pass over the pretraining set, from ``position`` (a run resumed mid-epoch) or its start.

    With ``--gp-every K`` the penalty is computed on the steps whose global index is a multiple of
    K, with weight K·λ; the reported penalty is the mean over those steps. Values leave the device
    only every ``--log-interval`` steps, before ``save`` is called (every ``--save-every-steps``
    global steps, and when ``stop`` is requested), and at the end: those are the points where a
    NaN or infinite loss raises `NonFiniteLoss`, naming the first step that had one, so no
    checkpoint is written after it. A requested stop inside the epoch saves and raises `Stopped`;
    with several processes they agree on it at the next ``--log-interval`` step (a collective
    every step would cost a host synchronisation), so all stop at the same step.
    """
    encoder.train()
    head.train()
    num_steps = len(data.pretrain) // args.batch_size
    position = position or Position(epoch)
    totals = torch.tensor(position.totals, device=device)
    penalty_steps = position.penalty_steps
    # Index of the first step with a non-finite loss, kept on the device: no per-step sync.
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    start = time.perf_counter() - position.seconds
    bar = tqdm(
        pretrain_batches(data, args, epoch, position.step, shard),
        total=num_steps,
        initial=position.step,
        desc=f"epoch {epoch}",
        leave=False,
        dynamic_ncols=True,
        disable=shard.rank != 0,
    )
    for step, (x1, x2) in enumerate(bar, start=position.step):
        global_step = epoch * num_steps + step
        penalised = args.lambda_gp > 0 and global_step % args.gp_every == 0
        penalty_steps += penalised
        values = training_step(
            encoder,
            head,
            optimizer,
            views,
            x1.to(device, non_blocking=True),
            x2.to(device, non_blocking=True),
            temperature=args.temperature,
            penalty_weight=args.gp_every * args.lambda_gp if penalised else 0.0,
            gp_upper_limit=args.gp_upper_limit,
            gp_normalization=not args.no_gp_normalization,
            generator=generator,
            channels_last=args.channels_last,
            compiled_encoder=compiled_encoder,
            amp_dtype=AMP_DTYPES[args.amp],
            scaler=scaler,
            shard=shard,
        )
        totals += values
        bad_now = (first_bad < 0) & ~torch.isfinite(values).all()
        first_bad = torch.where(bad_now, global_step, first_bad)
        done = step + 1
        log_now = done % args.log_interval == 0 or done == num_steps
        stop_now = stop is not None and stop.requested and done < num_steps
        if shard.world > 1:
            stop_now = log_now and any_process(stop_now, device)
        save_now = stop_now or (
            save is not None
            and args.save_every_steps is not None
            and (global_step + 1) % args.save_every_steps == 0
            and done < num_steps
        )
        if not (log_now or save_now):
            continue
        if (bad := int(first_bad)) >= 0:
            raise NonFiniteLoss(bad)
        c, g, t, clamped = totals.tolist()
        elapsed = time.perf_counter() - start
        rate = (done - position.step) * args.batch_size / max(elapsed - position.seconds, 1e-9)
        bar.set_postfix_str(
            f"c-loss {c / done:.3f} penalty {g / max(penalty_steps, 1):.4f} "
            f"loss {t / done:.3f} {rate:.0f} img/s"
        )
        if save_now and save is not None:
            save(Position(epoch, done, [c, g, t, clamped], penalty_steps, elapsed))
        if stop_now:
            bar.close()
            raise Stopped
    bar.close()
    elapsed = time.perf_counter() - start
    c, g, t, clamped = totals.tolist()
    row = {
        "contrastive_loss": c / max(num_steps, 1),
        "penalty": g / max(penalty_steps, 1),
        "loss": t / max(num_steps, 1),
        "images_per_s": (num_steps - position.step)
        * args.batch_size
        / max(elapsed - position.seconds, 1e-9),
        "time_s": elapsed,
    }
    if penalty_steps:
        # The share of penalised steps at which the clamp passed no gradient (NaN: unknown, an
        # epoch resumed from a checkpoint written before it was counted).
        fraction = clamped / penalty_steps
        row["clamp_fraction"] = None if math.isnan(fraction) else fraction
        row["gp_upper_limit"] = args.gp_upper_limit
    return row


def run_probe(
    encoder: nn.Module, views, data: DatasetBundle, args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Spec section 7 with the evaluation scripts' code and default weight, on plain images;
    Spirograph, which has no untransformed images, on one fixed-seed transformation draw per
    image, as the authors' probe (and `lbfgs_linear_clf_spirograph.py` by default) does."""
    _, result, _ = linear_probe(
        encoder,
        data,
        views,
        reg_weight=DEFAULT_REG_WEIGHT[data.task],
        untransformed=not isinstance(views, SpirographViews),
        num_passes=1,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        generator=torch.Generator(device).manual_seed(args.seed),
    )
    return {f"test_{k}": v for k, v in result.items() if k != "mse_per_target"}


def format_epoch(epoch: int, args: argparse.Namespace, row: dict[str, Any]) -> str:
    line = (
        f"epoch {epoch + 1:>4}/{args.num_epochs}  lr {row['lr']:.4g}  "
        f"c-loss {row['contrastive_loss']:.4f}  penalty {row['penalty']:.4g}  "
        f"loss {row['loss']:.4f}  {row['images_per_s']:.0f} img/s  {row['time_s']:.1f} s"
    )
    if row.get("clamp_fraction") is not None:
        line += f"  clamped {row['clamp_fraction']:.0%}"
    if "test_accuracy" in row:
        line += f"  probe acc {row['test_accuracy']:.2f}% loss {row['test_loss']:.4f}"
    if "test_mse" in row:
        line += f"  probe mse {row['test_mse']:.5f}"
    return line


def preview(
    args: argparse.Namespace, data: DatasetBundle, device: torch.device, path: Path
) -> Path:
    """`--preview N`: the first N images of the first epoch's order and their two views."""
    firsts: list[tuple[Tensor, Tensor]] = []
    for x1, x2 in pretrain_batches(data, args, epoch=0):
        firsts.append((x1, x2))
        if sum(len(a) for a, _ in firsts) >= args.preview:
            break
    inputs = tuple(torch.cat(part)[: args.preview].to(device) for part in zip(*firsts, strict=True))
    generator = torch.Generator(device).manual_seed(args.seed)
    write_preview(path, args.dataset, build_views(args, data), inputs, generator)
    print(f"wrote {path}")
    return path


def main(args: argparse.Namespace) -> Path:
    shard = launched_shard()
    try:
        return train(args, shard)
    finally:
        close_distributed()


def train(args: argparse.Namespace, shard: Shard) -> Path:
    """The run of `main`, as process ``shard.rank`` of ``shard.world``; only rank 0 writes files
    and prints."""
    resumed, resumed_from = None, None
    if args.resume:
        resumed_from = resolve_checkpoint(args.resume, args.checkpoint_dir)
        resumed = load_checkpoint(resumed_from)
        missing = [key for key in RESUME_KEYS if key not in resumed]
        if missing or not isinstance(resumed["args"], dict):
            raise CheckpointError(
                f"{resumed_from} lacks {', '.join(missing) or 'valid args'}, so it cannot be "
                "resumed (it was not written by this training script); start a new run"
            )
        args = merge_resumed_args(args, resumed["args"])
    device = resolve_device(args.device)
    defaults = get_args_parser()
    if (
        resumed is None  # a run that was allowed to start is allowed to go on
        and args.dataset == "spirograph"
        and (
            args.colour_strength != defaults.get_default("colour_strength") or args.blur is not None
        )
    ):
        raise UsageError(
            "--colour-strength and --blur shape natural images' views; Spirograph's views come "
            "from its own transformation parameters, so drop them"
        )
    if args.batch_size % shard.world:
        raise UsageError(
            f"--batch-size {args.batch_size} is the global batch and does not split evenly "
            f"among {shard.world} processes; make it a multiple of {shard.world}"
        )
    if args.cut_off is not None and args.cut_off > args.num_epochs:
        raise UsageError(
            f"--cut-off {args.cut_off} is beyond --num-epochs {args.num_epochs}; the schedule "
            "ends there, so lower --cut-off or raise --num-epochs"
        )
    if args.dataset == "imagenet" and args.test_freq > 0:
        raise UsageError(
            "ImageNet is too large for the full-batch L-BFGS probe; pass --test-freq 0"
        )

    device = init_distributed(shard, device)
    lead = shard.rank == 0
    say = print if lead else lambda *_, **__: None
    torch.manual_seed(args.seed)
    data = load_dataset(args.dataset, proportion=args.proportion, seed=args.seed)
    if len(data.pretrain) < args.batch_size:
        raise UsageError(
            f"--batch-size {args.batch_size} exceeds the {len(data.pretrain)} "
            "training images; lower it or raise --proportion"
        )
    checkpoint_dir = ensure_writable(args.checkpoint_dir)
    if args.preview:
        path = checkpoint_dir / f"{args.filename}.preview.png"
        return preview(args, data, device, path) if lead else path
    latest = checkpoint_dir / f"{args.filename}.pth"
    if latest.exists() and resumed is None and not args.overwrite:
        raise UsageError(
            f"{latest} exists, from an earlier run; continue it with --resume {latest}, or "
            "start afresh with --overwrite or another --filename"
        )
    if lead:
        remove_stale_temporaries(latest)
    views = build_views(args, data)
    sync_bn = args.sync_bn if args.sync_bn is not None else shard.world > 1
    encoder, head, optimizer, scheduler = build_model(args, data, device, sync_bn)
    broadcast_parameters([encoder, head])
    sgd = optimizer.optim
    # Checkpoints keep saving `encoder` itself, so their keys never carry `_orig_mod.`.
    compiled = torch.compile(encoder) if args.compile else None
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None
    generator = torch.Generator(device).manual_seed(args.seed)
    git = git_info(args.git)
    results: list[dict[str, Any]] = []
    position = Position(0)
    if resumed is not None:
        encoder.load_state_dict(resumed["encoder"])
        head.load_state_dict(resumed["head"])
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resumed["scheduler"])
        if scaler is not None and resumed.get("scaler") is not None:
            scaler.load_state_dict(resumed["scaler"])
        if not restore_rng(resumed["rng"], generator):
            say(
                f"note: the augmentation generator was saved on {resumed['args'].get('device')} "
                f"and does not carry over to {device.type}; it is reseeded from the checkpoint, "
                "so the random draws from here on differ from an uninterrupted run's"
            )
        results = resumed["results"]
        # Version 1 checkpoints were written at epoch ends only.
        position = Position(**resumed.get("next", {"epoch": resumed["epoch"] + 1}))
        within = f", step {position.step + 1}" if position.step else ""
        say(
            f"resuming {args.filename} at epoch {position.epoch + 1}{within}, "
            f"lr {sgd.param_groups[0]['lr']:.4g}"
        )

    # The checkpoint's rows are the truth: lines of epochs after it are dropped (see utils/metrics).
    metrics = metrics_path(checkpoint_dir, args.filename)
    if lead:
        rewrite_metrics(metrics, results)
    tensorboard = (
        TensorBoardLog(checkpoint_dir / f"{args.filename}.tensorboard")
        if args.tensorboard and lead
        else None
    )
    end_epoch = min(args.num_epochs, args.cut_off or args.num_epochs)
    processes = (
        f", {shard.world} processes ({args.batch_size // shard.world} images each, sync-bn "
        f"{'on' if sync_bn else 'off'})"
        if shard.world > 1
        else ""
    )
    say(
        f"training {args.arch} on {args.dataset}: {len(data.pretrain)} images, batch "
        f"{args.batch_size}, {len(data.pretrain) // args.batch_size} steps/epoch, epochs "
        f"{position.epoch + 1}-{end_epoch} of {args.num_epochs}, lambda-gp {args.lambda_gp}, "
        f"device {device}{processes}"
    )
    last_good = resumed_from

    def save(path: Path, at: Position) -> None:
        nonlocal last_good
        finite = all_finite(encoder.state_dict()) and all_finite(head.state_dict())
        if any_process(not finite, device):  # without sync-bn, running statistics may differ
            raise TrainingError(
                f"the weights hold NaN or infinite values at epoch {at.epoch + 1}, step "
                f"{at.step}; not saved. Last good checkpoint: {last_good or 'none'}; "
                "lower --base-lr or --lambda-gp, or raise --gp-upper-limit less"
            )
        if lead:
            save_checkpoint(
                {
                    "encoder": encoder.state_dict(),
                    "head": head.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "epoch": at.epoch - 1,  # the last complete epoch
                    "next": asdict(at),
                    "args": vars(args),
                    "results": results,
                    "rng": capture_rng(generator),
                    "git": git,
                },
                path,
            )
        last_good = path

    def stopped() -> SystemExit:
        # Another process may have received the signal first; they stop together.
        signum = stop.signal or signal.SIGTERM
        name = signal.Signals(signum).name
        say(
            f"stopped by {name}; saved {latest}. Resume with: python3 invariance_by_gradient.py "
            f"--resume {latest}",
            flush=True,
        )
        return SystemExit(128 + signum)

    with StopRequest() as stop:
        for epoch in range(position.epoch, end_epoch):
            row = {"epoch": epoch, "lr": sgd.param_groups[0]["lr"]}
            try:
                row.update(
                    train_one_epoch(
                        encoder, head, optimizer, views, data, args, epoch, device, generator,
                        compiled, scaler,
                        position=position if epoch == position.epoch else None,
                        save=lambda at: save(latest, at),
                        stop=stop,
                        shard=shard,
                    )
                )  # fmt: skip
            except NonFiniteLoss as error:
                steps = len(data.pretrain) // args.batch_size
                raise TrainingError(
                    f"the loss became NaN or infinite at step {error.step + 1} (epoch "
                    f"{error.step // steps + 1}, step {error.step % steps + 1}); stopped without "
                    f"saving. Last good checkpoint: {last_good or 'none'}; lower --base-lr or "
                    "--lambda-gp and resume from it, or restart"
                ) from None
            except Stopped:
                raise stopped() from None
            if scheduler is not None:
                scheduler.step()
            if args.test_freq and epoch % args.test_freq == args.test_freq - 1:
                row.update(run_probe(encoder, views, data, args, device))
            row["wall_s"] = (results[-1].get("wall_s", 0.0) if results else 0.0) + row["time_s"]
            results.append(row)
            say(format_epoch(epoch, args, row), flush=True)
            if (row.get("clamp_fraction") or 0) > 0.5:
                say(
                    f"warning: the penalty was at its clamp (--gp-upper-limit "
                    f"{args.gp_upper_limit:g}) on {row['clamp_fraction']:.0%} of this epoch's "
                    "penalised steps, where it passes no gradient: the run is close to SimCLR. "
                    "Raise --gp-upper-limit (or lower --lambda-gp) for the penalty to act",
                    flush=True,
                )
            if lead:
                append_metrics(metrics, row)
            if tensorboard is not None:
                tensorboard.write(row)
            if epoch % args.save_freq == args.save_freq - 1:
                kept = checkpoint_dir / f"{args.filename}_epoch{epoch + 1:03d}.pth"
                save(kept, Position(epoch + 1))
            # The latest state after every epoch: a crash costs at most one epoch (or
            # --save-every-steps steps).
            save(latest, Position(epoch + 1))
            if any_process(stop.requested, device):
                raise stopped()
        # Resumed from another file with nothing left to run.
        if any_process(lead and not latest.is_file(), device):
            save(latest, position)

    if tensorboard is not None:
        tensorboard.close()
    script = (
        "lbfgs_linear_clf_spirograph.py" if args.dataset == "spirograph" else "lbfgs_linear_clf.py"
    )
    say(f"saved {latest}; metrics in {metrics}")
    say(
        f"evaluate with: python3 {script} --load-from {latest.name} "
        f"--checkpoint-dir {args.checkpoint_dir}"
    )
    return latest


if __name__ == "__main__":
    run_cli(main, get_args_parser())
