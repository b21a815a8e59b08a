"""Data-parallel training (utils/distributed.py, models/sync_batchnorm.py): W processes on the
global batch take the step one process takes on it, and a run survives a change of W."""

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

import invariance_by_gradient as train
from augmentation.spirograph import sample_data_params
from augmentation.views import NaturalViews, SpirographViews
from datasets.sources import pretrain_batches
from models import ProjectionHead, ResNetEncoder
from models.invclr import Networks, rademacher
from models.sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from utils.distributed import (
    ONE_PROCESS,
    Shard,
    close_distributed,
    init_distributed,
    launched_shard,
)

REPO = Path(__file__).resolve().parent.parent
GLOBAL_BATCH = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_step(shard: Shard, sync_bn: bool, gp_scale: str = "none") -> dict[str, torch.Tensor]:
    """One penalised training step of a seeded ResNet-18 on this process's share of a fixed
    Spirograph batch, in float64: the values, every gradient, and the weights and batch-norm
    buffers after the step. ``gp_scale`` "spread": the relative penalty, with its limit out of
    reach."""
    args = train.get_args_parser().parse_args(
        ["--arch", "resnet18", "--width", "0.25", "--batch-size", str(GLOBAL_BATCH)]
    )
    torch.manual_seed(0)
    encoder, head, optimizer, _ = train.build_model(
        args, "cifar", torch.device("cpu"), sync_bn=sync_bn
    )
    batch = sample_data_params(GLOBAL_BATCH, generator=torch.Generator().manual_seed(1))
    mine = shard.rows(batch)
    views = SpirographViews(generator=torch.Generator().manual_seed(2), shard=shard)
    values = train.training_step(
        Networks(encoder, head), views, optimizer, mine, mine,
        temperature=0.5, penalty_weight=0.1, gp_upper_limit=1000.0 if gp_scale == "none" else 1e9,
        gp_normalization=True, gp_scale=gp_scale,
    )  # fmt: skip
    out = {"values": values}
    for prefix, module in (("encoder", encoder), ("head", head)):
        for name, p in module.named_parameters():
            out[f"grad/{prefix}.{name}"] = p.grad.clone()
        for name, t in module.state_dict().items():
            out[f"state/{prefix}.{name}"] = t.clone()
    return out


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    shard = launched_shard()
    init_distributed(shard, torch.device("cpu"))
    try:
        for sync_bn in (True, False):
            torch.save(one_step(shard, sync_bn), Path(folder) / f"sync{sync_bn:d}-rank{rank}.pt")
        torch.save(one_step(shard, True, "spread"), Path(folder) / f"relative-rank{rank}.pt")
        # The wrong variant: each process divides by its own shard's spread.
        exact = train.checked_spread
        train.checked_spread = lambda h, normalize, _, step: exact(h, normalize, None, step)
        torch.save(one_step(shard, True, "spread"), Path(folder) / f"shard-spread-rank{rank}.pt")
    finally:
        close_distributed()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, free_port(), str(folder)), nprocs=2, join=True)
    return folder


def one_step_float64(gp_scale: str = "none") -> dict[str, torch.Tensor]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return one_step(ONE_PROCESS, sync_bn=False, gp_scale=gp_scale)
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def one_process() -> dict[str, torch.Tensor]:
    return one_step_float64()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def assert_same_step(ddp: dict[str, torch.Tensor], one: dict[str, torch.Tensor]) -> None:
    """Values, every gradient, the weights and running statistics after the LARS step: equal to
    1e-5 relative."""
    assert ddp.keys() == one.keys()
    assert one["values"][1] > 0  # the penalty is on
    torch.testing.assert_close(ddp["values"], one["values"], rtol=1e-5, atol=0)
    for key, expected in one.items():
        if expected.is_floating_point() and expected.norm() > 0:
            assert relative_error(ddp[key], expected) < 1e-5, key
            torch.testing.assert_close(
                ddp[key], expected, rtol=1e-5, atol=1e-9 * expected.abs().max()
            )
        else:
            assert torch.equal(ddp[key], expected), key


def test_two_processes_take_the_single_process_step(two_processes, one_process):
    """Must-show 1: loss, penalty and every parameter gradient of 2 gloo processes with SyncBN
    equal one process's on the same global batch and draws, to 1e-5 relative; so do the
    weights and running statistics after the LARS step."""
    for rank in (0, 1):
        assert_same_step(torch.load(two_processes / f"sync1-rank{rank}.pt", weights_only=True),
                         one_process)  # fmt: skip


def test_the_relative_penalty_is_the_global_batchs_under_two_processes(two_processes):
    """--gp-scale spread: μ and s are the global batch's, so two processes take one process's
    step (values, spread, gradients, weights); each process dividing by its own shard's spread
    (the wrong variant) does not. The penalty's own gradient is not zero: λ = 0.1 moves them."""
    one = one_step_float64("spread")
    paper = one_step_float64()
    assert one["values"][4] > 0 and one["values"][3] == 0  # a spread, and the limit not reached
    # P / s is not P: the relative step is another step, so the comparison below tells them apart.
    assert relative_error(one["values"][1:2], paper["values"][1:2]) > 1e-2
    key = "grad/encoder.conv1.weight"
    assert relative_error(one[key], paper[key]) > 1e-4
    for rank in (0, 1):
        assert_same_step(torch.load(two_processes / f"relative-rank{rank}.pt", weights_only=True),
                         one)  # fmt: skip
        wrong = torch.load(two_processes / f"shard-spread-rank{rank}.pt", weights_only=True)
        assert relative_error(wrong["values"][1:2], one["values"][1:2]) > 1e-3
        assert relative_error(wrong[key], one[key]) > 1e-4


def test_without_sync_bn_the_step_differs(two_processes, one_process):
    """Per-process batch norm (the authors' DataParallel behaviour) sees 4 images, not 8: the
    comparison above is sensitive to the synchronisation."""
    ddp = torch.load(two_processes / "sync0-rank0.pt", weights_only=True)
    assert (
        relative_error(ddp["grad/encoder.conv1.weight"], one_process["grad/encoder.conv1.weight"])
        > 1e-3
    )


@pytest.mark.parametrize("kind", ["natural", "spirograph"])
def test_sharded_views_are_rows_of_the_global_views(kind):
    """Each process draws for the whole global batch and keeps its rows, so the union of the
    shards' views is one process's views, whatever the number of processes."""

    def make(shard):
        generator = torch.Generator().manual_seed(3)
        if kind == "natural":
            return NaturalViews("cifar10", 16, blur=True, generator=generator, shard=shard)
        return SpirographViews(generator=generator, shard=shard)

    if kind == "natural":
        inputs = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    else:
        inputs = sample_data_params(6)
    views = make(ONE_PROCESS)
    whole, theta = views.augment(inputs)
    h = torch.randn(6, 5)
    signs, fresh = views.signs(h, rademacher), views.fresh_nuisance(4, 6, h.device)
    for world in (2, 3):
        for rank in range(world):
            shard = Shard(rank, world)
            views = make(shard)
            part, part_theta = views.augment(shard.rows(inputs))
            torch.testing.assert_close(part, shard.rows(whole), rtol=0, atol=1e-6)
            torch.testing.assert_close(part_theta, shard.rows(theta), rtol=0, atol=0)
            # The penalty's draws too: signs (B, d) by rows, fresh (K, B, P) along B.
            b = 6 // world
            assert torch.equal(views.signs(shard.rows(h), rademacher), shard.rows(signs))
            assert torch.equal(views.fresh_nuisance(4, b, h.device), shard.rows(fresh, dim=1))


def test_processes_see_disjoint_shares_of_each_global_batch():
    data = SimpleNamespace(pretrain=torch.arange(40))

    def batches(epoch, **kwargs):
        return list(pretrain_batches(data, 6, seed=5, epoch=epoch, **kwargs))

    whole = batches(1)
    parts = [batches(1, shard=Shard(r, 3)) for r in range(3)]
    assert len(whole) == 6 and all(len(p) == 6 for p in parts)
    for step, (x, _) in enumerate(whole):
        assert torch.equal(torch.cat([p[step][0] for p in parts]), x)
    # A resumed epoch continues the same shares.
    later = batches(1, start_step=4, shard=Shard(2, 3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(later, parts[2][4:], strict=True))
    assert not torch.equal(whole[0][0], batches(2)[0][0])


def test_sync_batchnorm_keeps_batchnorm_keys_and_eval_behaviour():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(ResNetEncoder("resnet18", "cifar"), ProjectionHead(512))
    x = torch.randn(4, 3, 16, 16)
    plain.train()(x)  # running statistics away from their initial values
    sync = convert_sync_batchnorm(
        torch.nn.Sequential(ResNetEncoder("resnet18", "cifar"), ProjectionHead(512))
    )
    assert sum(isinstance(m, SyncBatchNorm) for m in sync.modules()) == sum(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in plain.modules()
    )
    sync.load_state_dict(plain.state_dict(), strict=True)
    assert sync.state_dict().keys() == plain.state_dict().keys()
    torch.testing.assert_close(sync.eval()(x), plain.eval()(x), rtol=0, atol=0)
    # One process has nothing to synchronise: training mode is BatchNorm's, buffers included.
    torch.testing.assert_close(sync.train()(x), plain.train()(x), rtol=0, atol=0)
    for (k, a), b in zip(sync.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
