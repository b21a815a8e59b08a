"""The training script under torchrun (utils/distributed.py): a pre-empted run stops at one
agreed step and resumes on one process, a killed worker's restart ends with the weights of a run
never interrupted, a restarted group finds the new addresses, and a failure in one process is one
line from each."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from inprocess import run_script
from test_distributed import free_port

REPO = Path(__file__).resolve().parent.parent


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
    # An eighth of the channels: 7 steps an epoch still leave the kill inside the second.
    flags = ["--dataset", "spirograph", "--arch", "resnet18", "--width", "0.125",
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


# The training script with rank 1's second step out of memory (the test's fault).
OOM_ON_RANK_1 = """
import os, sys
sys.path.insert(0, {repo!r})
import invariance_by_gradient as train
from utils.cli import run_cli
original, calls = train.training_step, []
def failing(*args, **kwargs):
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 2:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                           "1073741824 bytes")
    return original(*args, **kwargs)
train.training_step = failing
run_cli(train.main, train.get_args_parser())
"""


@pytest.mark.slow
def test_a_rank_out_of_memory_stops_every_process_in_one_line_each(tmp_path):
    """Rank 1 runs out of memory in its second step while rank 0 waits in that step's
    collective: rank 1 says why, rank 0 that it lost rank 1, and neither shows a traceback
    (before: rank 0's gloo RuntimeError "Connection closed by peer", 40 lines)."""
    script = tmp_path / "invariance_by_gradient_oom.py"
    script.write_text(OOM_ON_RANK_1.format(repo=str(REPO)))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), str(script), "--dataset", "spirograph", "--arch",
         "resnet18", "--width", "0.125", "--proportion", "0.0006", "--batch-size", "8",
         "--num-epochs", "1", "--test-freq", "0", "--device", "cpu", "--lambda-gp", "0.1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    # A progress bar's last frame may precede a line on the same terminal row.
    lines = done.stderr.replace("\r", "\n").splitlines()
    ours = [line[line.index(f"{script.name}: error"):] for line in lines
            if f"{script.name}: error" in line]  # fmt: skip
    assert sorted(ours) == [
        f"{script.name}: error on rank 1: out of memory in the training step (4 images per "
        "process on cpu); it tried to allocate 1.0 GiB: lower --batch-size or split it over more "
        "processes under torchrun (a GPU: also --amp); the penalty needs up to 1.7 times SimCLR's "
        "memory per image; no checkpoint of this run was written yet",
        f"{script.name}: error: stopped: another process of the run failed, and this one lost "
        "its connection to it (its own line says why); nothing was saved from the step under way",
    ], done.stderr[-3000:]
    assert "[rank0]: Traceback" not in done.stderr and "[rank1]: Traceback" not in done.stderr
    # No other line from the processes (a SIGTERM from torchrun must not add "finishing ...").
    assert (
        "SIGTERM received" not in done.stderr
        and "Traceback" not in done.stderr.split("torch/distributed/elastic")[0]
    )
