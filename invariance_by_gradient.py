"""Train an encoder with SimCLR and the InvCLR gradient penalty (spec sections 3-6).

    python3 invariance_by_gradient.py --dataset cifar10 --arch resnet50 --lambda-gp 1e-1 \
        --cosine-anneal --num-epochs 1000

`<checkpoint-dir>/<filename>.pth`, the latest state, is written after every epoch, every
`--save-every-steps` steps and on SIGTERM or Ctrl-C; `--resume` continues it exactly, mid-epoch
included. Under `torchrun` each process takes its share of the global `--batch-size`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from augmentation.views import NaturalViews, SpirographViews
from datasets.paths import dataset_folder
from datasets.sources import DATASETS, DatasetBundle, load_dataset, pretrain_batches
from evaluation.curves import format_epoch
from evaluation.probe import check_monitors, training_scores
from models import ARCHITECTURES, ProjectionHead, ResNetEncoder
from models.invclr import (
    PENALTY_SAMPLES,
    CollapsedSpread,
    Networks,
    checked_spread,
    gradient_penalty,
    nt_xent,
    rademacher,
)
from models.sync_batchnorm import convert_sync_batchnorm
from utils.checkpoint import ensure_writable, remove_stale_temporaries
from utils.cli import (
    ArgFileParser,
    DefaultsHelpFormatter,
    UsageError,
    add_runtime_args,
    file_stem,
    float_at_least,
    given_flags,
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
    broadcast_parameters,
    close_distributed,
    init_distributed,
    launched_shard,
    mean_over_processes,
    process_group_backend,
    stopped_with_a_failed_process,
)
from utils.lars import LARS, param_groups_excluding_bn_bias
from utils.lock import run_lock
from utils.metrics import RunLog
from utils.resume import resume_args
from utils.run import (
    NonFiniteLoss,
    Position,
    RunState,
    StepMeter,
    Stopped,
    git_info,
    optimizer_step,
    shared_write,
    stop_exit,
)
from utils.schedule import CosineAnnealingWithLinearRampLR
from utils.signals import StopRequest

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TEST_FREQ = 10  # --test-freq's default where the dataset has a full-batch probe
# training_step's values in order, each with its label in the progress line (None: not shown);
# each counts on the steps that measure it (SimCLR's penalty is 0 on every step).
STEP_VALUES = {"contrastive_loss": "c-loss", "penalty": "penalty", "loss": "loss",
               "clamp_fraction": None, "spread": None}  # fmt: skip
ADVICE = "lower --base-lr or --lambda-gp"  # for a run whose loss or weights stop being finite
MEMORY_ADVICE = ("lower --batch-size or split it over more processes under torchrun (a GPU: also "
                 "--amp); the penalty needs up to 1.7 times SimCLR's memory per image")  # fmt: skip
MONITOR_ADVICE = "resume with --test-freq 0 --knn-freq 0 and evaluate the checkpoints afterwards"


def get_args_parser() -> argparse.ArgumentParser:
    p = ArgFileParser(
        description="Train an encoder with SimCLR and the InvCLR gradient penalty.",
        formatter_class=DefaultsHelpFormatter,
    )
    nonneg, positive = float_at_least(0.0), float_at_least(0.0, strict=True)
    # fmt: off
    run = p.add_argument_group("run", "what the run is; fixed once it starts (--resume keeps them)")
    run.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS),
                     help="training data; folders come from dataset-paths.json")
    run.add_argument("--arch", default="resnet50", choices=sorted(ARCHITECTURES),
                     help="encoder architecture")
    run.add_argument("--width", type=width_multiplier, default=1.0,
                     help="multiplier of every stage's channel count (1 is the paper's network; "
                     "0.25 keeps a quarter of the channels, for small-budget runs)")
    run.add_argument("--base-lr", type=nonneg, default=1.5,
                     help="base learning rate; the rate used is base-lr x batch-size / 256")
    run.add_argument("--num-epochs", type=int_at_least(1), default=1000,
                     help="epochs the learning-rate schedule spans")
    run.add_argument("--cosine-anneal", action="store_true",
                     help="10-epoch linear ramp then cosine decay to 0; constant rate when off")
    run.add_argument("--batch-size", type=int_at_least(2), default=512,
                     help="images per step: the global batch, split evenly among the processes "
                     "under torchrun (the learning rate and the penalty's mean are over it)")
    run.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                     help="batch-norm statistics over the global batch rather than each "
                     "process's share (default: on under torchrun with more than one process)")
    run.add_argument("--temperature", type=positive, default=0.5, help="NT-Xent temperature")
    run.add_argument("--momentum", type=nonneg, default=0.9, help="SGD momentum")
    run.add_argument("--weight-decay", type=nonneg, default=1e-6, help="SGD weight decay")
    run.add_argument("--trust-coef", type=nonneg, default=1e-3, help="LARS trust coefficient")
    run.add_argument("--lars-exclude-bn-bias", action="store_true",
                     help="leave batch-norm and bias parameters out of LARS adaptation and weight "
                     "decay (SimCLR's TensorFlow choice); off: all adapted, as torchlars")
    run.add_argument("--lambda-gp", type=nonneg, default=0.0,
                     help="weight of the gradient penalty; 0 turns it off")
    run.add_argument("--gp-upper-limit", type=positive, default=1.0,
                     help="the penalty is clamped from above at this value")
    run.add_argument("--gp-every", type=int_at_least(1), default=1,
                     help="compute the penalty every K-th step with weight K·lambda (lazy "
                     "regularisation); 1 is the paper's exact estimator")
    run.add_argument("--no-gp-normalization", action="store_true",
                     help="penalise the raw representation h instead of h / ||h||")
    run.add_argument("--gp-scale", choices=("none", "spread"), default="none",
                     help="spread: the penalty over the batch's spread (docs/invariance.md), "
                     "clamped by a --gp-upper-limit you give. none: the paper's penalty")
    run.add_argument("--colour-strength", type=nonneg, default=0.5,
                     help="colour distortion strength s (1.0 is SimCLR's ImageNet setting)")
    run.add_argument("--blur", action=argparse.BooleanOptionalAction, default=None,
                     help="Gaussian blur of the training views (default: on for imagenet only)")
    run.add_argument("--proportion", type=proportion, default=1.0,
                     help="fraction of the training set kept, for pretraining and for the "
                     "probe's labelled set alike (stratified by class; Spirograph: of both its "
                     "train and test sets)")
    run.add_argument("--seed", type=seed_value, default=0,
                     help="seed of initialisation, data order and augmentation")

    # Everything here may change when a run is resumed (utils.resume.merge_resumed_args).
    more = p.add_argument_group("resumable", "how the run is carried out; may change on --resume")
    add_runtime_args(more)
    more.add_argument("--cut-off", type=int_at_least(1), default=None,
                      help="stop after this many epochs while the schedule still spans "
                      "--num-epochs (default: train all --num-epochs)")
    more.add_argument("--test-freq", type=int_at_least(0), default=None,
                      help=f"fit the L-BFGS linear probe every this many epochs; 0 turns it off "
                      f"(default: {TEST_FREQ}; 0 for ImageNet, which has no full-batch probe)")
    more.add_argument("--knn-freq", type=int_at_least(0), default=0,
                      help="score the kNN classifiers (weighted k=200, majority k=10) on the "
                      "probe's encoding every this many epochs; 0 turns it off")
    more.add_argument("--channels-last", action="store_true",
                      help="NHWC memory format for the encoder (usually faster on GPUs; measure "
                      "with benchmarks/throughput.py)")
    more.add_argument("--compile", action="store_true",
                      help="torch.compile the encoder for the views without the penalty (the "
                      "penalised view needs a double backward, which compiled graphs lack)")
    more.add_argument("--amp", choices=list(AMP_DTYPES), default="off",
                      help="mixed precision except for the penalised view; fp16 adds loss "
                      "scaling. For GPUs; on a CPU measure it (docs/mixed-precision.md)")
    more.add_argument("--log-interval", type=int_at_least(1), default=10,
                      help="refresh the progress bar every this many steps; only then do values "
                      "leave the device (a host synchronisation)")
    more.add_argument("--save-freq", type=int_at_least(1), default=100,
                      help="write <filename>_epoch<NNN>.pth every this many epochs")
    more.add_argument("--save-every-steps", type=int_at_least(1), default=None, metavar="K",
                      help="also write <filename>.pth every K steps, so that a crash costs at most "
                      "K steps (it is always written after every epoch)")
    more.add_argument("--filename", type=file_stem, default="output",
                      help="checkpoint name stem (no folders)")
    more.add_argument("--checkpoint-dir", default="checkpoint", help="folder for checkpoints")
    more.add_argument("--overwrite", action="store_true",
                      help="start a new run even if <filename>.pth exists (replaced at the first "
                      "save)")
    more.add_argument("--resume", default=None, metavar="FILE",
                      help="continue the run saved in FILE (a path, or a name in "
                      "--checkpoint-dir); 'auto': <checkpoint-dir>/<filename>.pth if it exists, "
                      "else start (for requeued jobs and torchrun restarts)")
    more.add_argument("--git", action="store_true",
                      help="also record `git diff` in the checkpoint (the hash is always recorded)")
    more.add_argument("--tensorboard", action="store_true",
                      help="also write TensorBoard events to <checkpoint-dir>/<filename>"
                      ".tensorboard/ (needs the tensorboard package; <filename>.metrics.jsonl is "
                      "written either way)")
    more.add_argument("--preview", type=int_at_least(1), default=None, metavar="N",
                      help="write <checkpoint-dir>/<filename>.preview.png, N training images "
                      "beside their two views, and exit without training")
    # fmt: on
    return p


def build_model(
    args: argparse.Namespace, stem: str, device: torch.device, sync_bn: bool = False
) -> tuple[nn.Module, nn.Module, LARS, CosineAnnealingWithLinearRampLR | None]:
    """Encoder, projection head, LARS(SGD) at base × batch / 256, and the optional schedule
    (attached to the wrapped SGD). ``sync_bn`` swaps every batch norm for `SyncBatchNorm`."""
    encoder = ResNetEncoder(args.arch, stem, args.width)
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


def training_step(
    nets: Networks,
    views: NaturalViews | SpirographViews,
    optimizer: LARS,
    x1: Tensor,
    x2: Tensor,
    *,
    temperature: float,
    penalty_weight: float,
    gp_upper_limit: float,
    gp_normalization: bool = True,
    gp_scale: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    step: int = 0,
) -> Tensor:
    """One optimisation step (spec section 5; ``penalty_weight`` 0: none); returns `STEP_VALUES`
    detached, as one device tensor. Only ``gp_scale`` "spread" waits for the device, to raise
    `CollapsedSpread` before the backward pass. Under `torchrun`, ``x1`` and ``x2`` are this
    process's share of the global batch, and the step is the one-process step on all of it."""
    penalised, spread = penalty_weight > 0, None
    view1, theta1 = views.augment(x1, requires_grad=penalised)
    view2, _ = views.augment(x2)
    h1, h2 = nets.encode(view1, view2, penalised)
    with nets.autocast(h1.device):
        contrastive = nt_xent(nets.project(h1), nets.project(h2), temperature)
    # float32 at least: autocast's low precision is for the forward, not for the loss's value.
    contrastive = contrastive.to(torch.promote_types(contrastive.dtype, torch.float32))
    if penalised:
        signs = views.signs(h1, rademacher)
        fresh = views.fresh_nuisance(PENALTY_SAMPLES, h1.shape[0], h1.device)
        if gp_scale == "spread":  # the global batch's spread, the same on every process
            spread = checked_spread(h1, gp_normalization, mean_over_processes, step)
        penalty = gradient_penalty(
            h1, theta1, fresh, signs, upper_limit=gp_upper_limit, normalize=gp_normalization,
            combine=mean_over_processes, spread=spread,
        )  # fmt: skip
        # At the clamp the penalty passes no gradient: training counts how often that happens.
        clamped = (penalty >= gp_upper_limit).float()
    else:
        penalty = clamped = torch.zeros((), device=h1.device)
    loss = contrastive + penalty_weight * penalty
    optimizer_step(loss, optimizer, nets.parameters(), scaler)
    spread = torch.zeros_like(loss) if spread is None else spread
    return torch.stack([contrastive, penalty, loss, clamped, spread]).detach()


def train_one_epoch(
    nets: Networks,
    views: NaturalViews | SpirographViews,
    optimizer: LARS,
    data: DatasetBundle,
    args: argparse.Namespace,
    position: Position,
    device: torch.device,
    *,
    scaler: torch.amp.GradScaler | None = None,
    run: RunState | None = None,
    latest: Path | None = None,
    stop: StopRequest | None = None,
    shard: Shard = ONE_PROCESS,
) -> dict[str, float]:
    """One pass over the pretraining set from ``position``, with `--gp-every`'s lazy penalty.
    Values leave the device every ``--log-interval`` steps and before each save, where a
    non-finite one raises `NonFiniteLoss`. A stop saves and raises `Stopped` (agreed at a log step).
    """
    nets.train()
    epoch, num_steps = position.epoch, len(data.pretrain) // args.batch_size
    simclr, relative = args.lambda_gp == 0, args.gp_scale == "spread"
    meter = StepMeter(position, num_steps, args.batch_size, device, STEP_VALUES,
                      show=shard.rank == 0)  # fmt: skip
    batches = pretrain_batches(
        data, args.batch_size, seed=args.seed, epoch=epoch, start_step=position.step,
        shard=shard, num_workers=args.num_workers,
    )  # fmt: skip
    for step, (x1, x2) in meter.log_every(batches):
        global_step = epoch * num_steps + step
        penalised = args.lambda_gp > 0 and global_step % args.gp_every == 0
        weight = args.gp_every * args.lambda_gp if penalised else 0.0
        # In-memory data yields one tensor for both views: copy it to the device once.
        same = x2 is x1
        x1 = x1.to(device, non_blocking=True)
        x2 = x1 if same else x2.to(device, non_blocking=True)
        values = training_step(
            nets, views, optimizer, x1, x2, temperature=args.temperature, penalty_weight=weight,
            gp_upper_limit=args.gp_upper_limit, gp_normalization=not args.no_gp_normalization,
            gp_scale=args.gp_scale, scaler=scaler, step=global_step,
        )  # fmt: skip
        counted = (True, penalised or simclr, True, penalised, penalised and relative)
        meter.add(values, global_step, counted)
        done = step + 1
        log_now = done % args.log_interval == 0 or done == num_steps
        stop_now = stop is not None and stop.requested and done < num_steps
        if shard.world > 1:
            stop_now = log_now and any_process(stop_now, device)
        every = args.save_every_steps or 0  # 0: only at the epoch's end
        save_now = stop_now or (every > 0 and (global_step + 1) % every == 0 and done < num_steps)
        if log_now or save_now:
            at = meter.sync(done)
            if save_now and run is not None:
                run.save(latest, at)
            if stop_now:
                raise Stopped
    row = meter.row()  # with the clamp that clamp_fraction's steps were at
    return row | ({"gp_upper_limit": args.gp_upper_limit} if "clamp_fraction" in row else {})


def check_args(args: argparse.Namespace, shard: Shard, resumed: bool) -> None:
    """Bad combinations of flags, each one line saying what to do."""
    info = DATASETS[args.dataset]
    default_strength = get_args_parser().get_default("colour_strength")
    views_flags = args.colour_strength != default_strength or args.blur is not None
    if info.rendered and views_flags and not resumed:  # a run allowed to start may go on
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
    given = given_flags(args)  # None: a namespace built in code (or resumed), flags all meant
    if args.gp_scale != "none" and args.lambda_gp == 0:
        raise UsageError("--gp-scale scales the penalty, which --lambda-gp 0 turns off; drop one")
    if args.gp_scale != "none" and given is not None and "gp_upper_limit" not in given:
        raise UsageError(
            "--gp-scale spread clamps the quotient, whose scale is not the penalty's (the "
            "default limit 1 would hold it from the first step); give --gp-upper-limit (1e9: none)"
        )
    check_monitors(info, args.test_freq, args.knn_freq)


def main(args: argparse.Namespace) -> Path:
    shard = launched_shard()
    try:
        with contextlib.ExitStack() as held, stopped_with_a_failed_process():
            return train(args, shard, held)
    finally:
        close_distributed()


def train(args: argparse.Namespace, shard: Shard, held: contextlib.ExitStack) -> Path:
    """The run of `main`, as process ``shard.rank`` of ``shard.world``; only rank 0 writes files
    and prints, and holds the run's lock in ``held``."""
    args, resumed = resume_args(args, get_args_parser())
    if args.test_freq is None:  # no probe where the dataset has none (ImageNet)
        probe_every = TEST_FREQ if DATASETS[args.dataset].full_batch_probe else 0
        args = argparse.Namespace(**{**vars(args), "test_freq": probe_every})
    device = resolve_device(args.device)
    check_args(args, shard, resumed is not None)
    device = init_distributed(shard, device)
    lead = shard.rank == 0
    say = print if lead else lambda *_, **__: None
    if not DATASETS[args.dataset].rendered:
        dataset_folder(args.dataset)  # a missing dataset is refused before any folder is made
    checkpoint_dir = ensure_writable(args.checkpoint_dir)
    if lead and not args.preview:  # before any data is loaded or any file of the run touched
        held.enter_context(run_lock(checkpoint_dir, args.filename))
    torch.manual_seed(args.seed)
    data = load_dataset(args.dataset, proportion=args.proportion, seed=args.seed)
    info = data.info
    if len(data.pretrain) < args.batch_size:
        raise UsageError(
            f"--batch-size {args.batch_size} exceeds the {len(data.pretrain)} training images; "
            "lower it or raise --proportion"
        )
    if args.preview:  # the first N images of epoch 1's order beside their views, as one process
        path = checkpoint_dir / f"{args.filename}.preview.png"
        if lead:
            from augmentation.preview import write_preview  # matplotlib: for this picture only

            seeded = torch.Generator(device).manual_seed(args.seed)
            views = info.views(args.colour_strength, args.blur, generator=seeded)
            first = pretrain_batches(data, args.batch_size, seed=args.seed, epoch=0,
                                     num_workers=args.num_workers)  # fmt: skip
            write_preview(path, views, first, args.preview, device)
        return path
    latest = checkpoint_dir / f"{args.filename}.pth"
    if latest.exists() and resumed is None and not args.overwrite:
        raise UsageError(
            f"{latest} exists, from an earlier run; continue it with --resume {latest}, or "
            "start afresh with --overwrite or another --filename"
        )
    if lead:
        remove_stale_temporaries(latest)

    generator = torch.Generator(device).manual_seed(args.seed)
    views = info.views(args.colour_strength, args.blur, generator=generator, shard=shard)
    sync_bn = args.sync_bn if args.sync_bn is not None else shard.world > 1
    encoder, head, optimizer, scheduler = build_model(args, info.stem, device, sync_bn)
    broadcast_parameters([encoder, head])
    # Checkpoints keep saving `encoder` itself, so their keys never carry `_orig_mod.`.
    compiled = torch.compile(encoder) if args.compile else None
    nets = Networks(encoder, head, compiled=compiled, amp_dtype=AMP_DTYPES[args.amp],
                    channels_last=args.channels_last)  # fmt: skip
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None
    modules = dict(encoder=encoder, head=head, optimizer=optimizer, scheduler=scheduler,
                   scaler=scaler)  # fmt: skip
    run = RunState(modules, generator, args, lead=lead, device=device, git=git_info(args.git),
                   advice=ADVICE)  # fmt: skip
    held.enter_context(run.stopped_on_write_failure())
    position = run.restore(resumed, say)
    log = shared_write(lambda: RunLog(checkpoint_dir, args.filename, run.results, lead=lead,
                                      tensorboard=args.tensorboard), device)  # fmt: skip
    end_epoch = min(args.num_epochs, args.cut_off or args.num_epochs)
    steps = len(data.pretrain) // args.batch_size
    processes = (
        f", {shard.world} processes ({args.batch_size // shard.world} images each, sync-bn "
        f"{'on' if sync_bn else 'off'})" if shard.world > 1 else ""
    )  # fmt: skip
    if backend := process_group_backend():
        processes += f", process group {backend}"
    with StopRequest() as stop:
        # Said once the handlers are in: from this line on a signal stops the run gracefully.
        say(
            f"training {args.arch} on {args.dataset}: {len(data.pretrain)} images, batch "
            f"{args.batch_size}, {steps} steps/epoch, epochs {position.epoch + 1}-{end_epoch} of "
            f"{args.num_epochs}, lambda-gp {args.lambda_gp}, device {device}{processes}"
        )
        for epoch in range(position.epoch, end_epoch):
            row: dict[str, Any] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            at = position if epoch == position.epoch else Position(epoch)
            share = f"{args.batch_size // shard.world} images per process on {device}"
            try:
                with run.stopped_on_out_of_memory(f"the training step ({share})", MEMORY_ADVICE):
                    row |= train_one_epoch(
                        nets, views, optimizer, data, args, at, device,
                        scaler=scaler, run=run, latest=latest, stop=stop, shard=shard,
                    )  # fmt: skip
            except NonFiniteLoss as error:
                raise error.explained(steps, run.last_good, ADVICE) from None
            except CollapsedSpread as error:
                raise error.explained(steps, run.last_good) from None
            except Stopped:
                raise stop_exit(stop.signal, latest, Path(__file__).name, say) from None
            if scheduler is not None:
                scheduler.step()
            with run.stopped_on_out_of_memory(f"the probe or kNN on {device}", MONITOR_ADVICE):
                row |= training_scores(
                    encoder, data, epoch, test_freq=args.test_freq, knn_freq=args.knn_freq,
                    seed=args.seed, colour_strength=args.colour_strength,
                    num_workers=args.num_workers, device=device,
                )  # fmt: skip
            row = shared_write(functools.partial(log.add, row), device)  # one failure stops all
            say(format_epoch(row, args.num_epochs), flush=True)
            if epoch % args.save_freq == args.save_freq - 1:
                kept = checkpoint_dir / f"{args.filename}_epoch{epoch + 1:03d}.pth"
                run.save(kept, Position(epoch + 1))
            # The latest state after every epoch: a crash costs at most one epoch (or
            # --save-every-steps steps).
            run.save(latest, Position(epoch + 1))
            if any_process(stop.requested, device):
                raise stop_exit(stop.signal, latest, Path(__file__).name, say)
        # Resumed from another file with nothing left to run.
        if any_process(lead and not latest.is_file(), device):
            run.save(latest, position)

    log.close()
    say(f"saved {latest}; metrics in {log.path}")
    say(f"evaluate with: python3 {info.evaluation_script} --load-from {latest.name} "
        f"--checkpoint-dir {args.checkpoint_dir}")  # fmt: skip
    return latest


if __name__ == "__main__":
    run_cli(main, get_args_parser())
