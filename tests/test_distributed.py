"""Data-parallel training (utils/distributed.py, models/sync_batchnorm.py): W processes on the
global batch take the step one process takes on it, and a run survives a change of W."""

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from inprocess import run_script

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


def torchrun(workdir: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(free_port()), str(REPO / "invariance_by_gradient.py"), *flags,
        ],
        cwd=workdir, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_torchrun_stops_on_sigterm_resumes_on_one_process_and_evaluates(tmp_path):
    """Must-show 2 at test scale. torchrun with 2 CPU processes trains with the penalty; SIGTERM
    (a scheduler's pre-emption, passed on by torchrun) makes both stop at one agreed step and
    rank 0 save it; a plain single process resumes there and finishes the epoch, and the
    evaluation script reads the result."""
    # A quarter of the channels: steps stay long enough for SIGTERM to land mid-epoch.
    flags = ["--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25",
             "--proportion", "0.0006", "--batch-size", "8", "--num-epochs", "1",
             "--test-freq", "0", "--device", "cpu", "--lambda-gp", "0.1", "--log-interval", "1",
             "--save-every-steps", "1", "--filename", "ddp"]  # fmt: skip
    saved = tmp_path / "checkpoint" / "ddp.pth"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), str(REPO / "invariance_by_gradient.py"), *flags],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not saved.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the first step's save: training is under way
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert out.count("training resnet18 on spirograph") == 1, err[-3000:]  # rank 0 alone
    assert "2 processes (4 images each, sync-bn on)" in out
    assert "stopped by SIGTERM" in out, err[-3000:]
    stopped = torch.load(saved, weights_only=True)["next"]
    assert stopped["epoch"] == 0 and 0 < stopped["step"] < 7
    assert stopped["counts"] == [stopped["step"]] * 4 + [0]  # all penalised; the spread unused

    # The single process and the evaluation need no process of their own.
    resumed = run_script("invariance_by_gradient.py", tmp_path, "--resume", "ddp.pth",
                         "--device", "cpu", "--save-every-steps", "1000")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming ddp at epoch 1, step {stopped['step'] + 1}" in resumed.stdout
    finished = torch.load(saved, weights_only=True)
    assert finished["next"]["epoch"] == 1 and finished["args"]["batch_size"] == 8
    rows = (tmp_path / "checkpoint" / "ddp.metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["penalty"] > 0

    evaluated = run_script("lbfgs_linear_clf_spirograph.py", tmp_path, "--load-from", "ddp.pth",
                           "--device", "cpu")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout.splitlines()[-1])["mse"] > 0


# A worker of torchrun's restart `RESTART`, as the agent starts it (the agent's store serves
# MASTER_PORT); rank 0 of the restart is slow to start, so rank 1 looks up its address first.
RESTARTED_WORKER = """
import os, sys, time
import torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from utils.distributed import Shard, init_distributed
rank = int(os.environ["RANK"])
if rank == 0 and os.environ["TORCHELASTIC_RESTART_COUNT"] != "0":
    time.sleep(2)
init_distributed(Shard(rank, 2), torch.device("cpu"))
total = torch.ones(1)
dist.all_reduce(total)
print(int(total.item()), flush=True)
os._exit(0)  # no clean shutdown, as a killed worker has none
"""


def test_a_restarted_group_does_not_read_the_addresses_of_the_group_before_it():
    """The agent's store outlives a restart: without a prefix per restart, rank 1 of the second
    group would read the address rank 0 of the first published, connect to a process that is
    gone, and fail or wait out the timeout."""
    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, 3, is_master=True, wait_for_workers=False)
    for restart in ("0", "1"):
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", RESTARTED_WORKER, str(REPO)], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, start_new_session=True,
                env={**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                     "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                     "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_USE_AGENT_STORE": "True",
                     "TORCHELASTIC_RESTART_COUNT": restart, "OMP_NUM_THREADS": "1"},
            )
            for rank in range(2)
        ]  # fmt: skip
        try:
            outputs = [worker.communicate(timeout=60) for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGKILL)
        assert [w.returncode for w in workers] == [0, 0], outputs[1][1][-2000:]
        assert [out.strip() for out, _ in outputs] == ["2", "2"]
    del store


def launch_torchrun(
    workdir: Path, *flags: str, restarts: int = 0, file_size: int | None = None
) -> subprocess.Popen:
    """torchrun with 2 CPU workers; ``file_size``: the most bytes any file they write may hold."""

    def limited() -> None:
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, resource.RLIM_INFINITY))

    return subprocess.Popen(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--max-restarts", str(restarts), "--monitor-interval", "0.2",
            "--master_port", str(free_port()), str(REPO / "invariance_by_gradient.py"), *flags,
        ],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True, preexec_fn=limited,
    )  # fmt: skip


def finish_torchrun(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """Its output; a launch still running after ``timeout`` s is killed, workers and all."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def worker_pids(agent: int) -> dict[int, int]:
    """The processes torchrun's agent ``agent`` started, by local rank (from their environment)."""
    workers = {}
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != agent:
                continue
            env = (proc / "environ").read_text().split("\0")
            local_rank = next(v.split("=", 1)[1] for v in env if v.startswith("LOCAL_RANK="))
            workers[int(local_rank)] = int(proc.name)
        except (OSError, ValueError, IndexError, StopIteration):
            continue  # not a process, gone meanwhile, or not a worker
    return workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
def test_torchrun_restarts_a_killed_worker_and_the_same_command_ends_with_the_same_weights(
    tmp_path,
):
    """`torchrun --max-restarts 1` with --resume auto: rank 1 killed (SIGKILL) in the middle of
    the second epoch, torchrun stops rank 0 and starts both again with the same command, which
    continues the last mid-epoch checkpoint: the encoder ends bit-identical to a run that was
    never interrupted."""
    flags = ["--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25",
             "--proportion", "0.0006", "--batch-size", "8", "--num-epochs", "2",
             "--test-freq", "0", "--device", "cpu", "--lambda-gp", "1e-2",
             "--gp-upper-limit", "1000", "--save-every-steps", "1", "--resume", "auto",
             "--filename", "ddp"]  # fmt: skip
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    proc = launch_torchrun(whole, *flags)
    _, err = finish_torchrun(proc)
    assert proc.returncode == 0, err[-3000:]

    proc = launch_torchrun(cut, *flags, restarts=1)
    saved = cut / "checkpoint" / "ddp.pth"
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            at = torch.load(saved, weights_only=True)["next"] if saved.exists() else {"epoch": 0}
            if at["epoch"] == 1 and at["step"] >= 2:  # the second epoch's third step is under way
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the kill"
        os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
    finally:
        out, err = finish_torchrun(proc)  # a restart that cannot connect would wait 30 minutes
    assert proc.returncode == 0, err[-3000:]
    assert "exitcode: -9" in err  # torchrun saw the kill, and restarted (one resume below)
    resumed = [line for line in out.splitlines() if line.startswith("resuming ddp")]
    assert len(resumed) == 1 and resumed[0].startswith("resuming ddp at epoch 2, step "), out
    assert int(resumed[0].split("step ")[1].split(",")[0]) >= 3  # in the middle of the epoch

    ends = [torch.load(d / "checkpoint" / "ddp.pth", weights_only=True) for d in (whole, cut)]
    assert [e["next"]["epoch"] for e in ends] == [2, 2]
    for key in ("encoder", "head"):
        different = [k for k, v in ends[0][key].items() if not torch.equal(v, ends[1][key][k])]
        assert not different, f"{key}: {len(different)} tensors differ, e.g. {different[:3]}"
    rows = (cut / "checkpoint" / "ddp.metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in rows] == [1, 2]


def test_a_checkpoint_rank_0_cannot_write_stops_every_process_in_one_line_each(tmp_path):
    """Under a file-size limit rank 0's first save fails: every process stops there, rank 0
    with the file and the reason, rank 1 saying it stopped with rank 0; no collective is left
    waiting for a process that is gone."""
    flags = ["--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25",
             "--proportion", "0.0006", "--batch-size", "8", "--num-epochs", "1",
             "--test-freq", "0", "--device", "cpu", "--save-every-steps", "2"]  # fmt: skip
    out, err = finish_torchrun(launch_torchrun(tmp_path, *flags, file_size=2**20))
    # Both processes write to torchrun's one stderr, whose lines may interleave.
    assert err.count("invariance_by_gradient.py: error") == 2, err[-3000:]
    assert (
        "invariance_by_gradient.py: error: cannot write checkpoint/output.pth (larger than the "
        "file-size limit of this process (ulimit -f), 1048576 bytes); no checkpoint of this run "
        "was written yet: make room and run it again"
    ) in err
    assert (
        "invariance_by_gradient.py: error on rank 1: stopped with rank 0, which could not write "
        "a file of the run (its line says which); no checkpoint of this run was written yet: "
        "make room and run it again"
    ) in err
    assert "Connection reset" not in err and "DistBackendError" not in err
    assert not (tmp_path / "checkpoint" / "output.pth").exists()


def test_batch_that_does_not_split_is_one_line(tmp_path):
    done = torchrun(
        tmp_path, "--dataset", "spirograph", "--proportion", "0.0002", "--batch-size", "7",
        "--device", "cpu",
    )  # fmt: skip
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if "invariance_by_gradient.py: error" in line]
    assert ours == [
        "invariance_by_gradient.py: error: --batch-size 7 is the global batch and does not split "
        "evenly among 2 processes; make it a multiple of 2"
    ]
