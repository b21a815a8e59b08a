"""A batch that does not fit is one line: which step, the size that sets its memory, what to
change and the checkpoint to continue from; nothing already written changes (utils/memory.py).

The allocation failures are raised where they happen (in the training step, the in-training
probe, the evaluation's steps) by the errors torch and the system raise, CUDA's included, so the
CPU suite covers every branch; two tests run a real process under an address-space limit."""

import errno
import json
import resource
import subprocess
import sys

import pytest
import torch
from test_crash_safety import REPO
from test_evaluation import write_checkpoint
from test_full_disk import SMALL, digest, first_epoch, one_line, run
from tiny_data import write_cifar_pickles, write_paths

import evaluation.measures
import evaluation.session
import invariance_by_gradient as train
from utils.memory import attempted_bytes, is_out_of_memory

CPU_FAILURE = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 1073741824 bytes. Error code 12 (Cannot allocate memory)"
)
CUDA_FAILURE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB "
    "of which 1.05 GiB is free."
)
FAILURES = {
    "cpu": lambda: RuntimeError(CPU_FAILURE),
    "cuda": lambda: torch.OutOfMemoryError(CUDA_FAILURE),
    "system": lambda: OSError(errno.ENOMEM, "Cannot allocate memory"),
}
SAID = {"cpu": "it tried to allocate 1.0 GiB", "cuda": "it tried to allocate 2.0 GiB", "system": ""}


def test_the_three_failures_are_told_apart_from_other_errors():
    assert all(is_out_of_memory(make()) for make in FAILURES.values())
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(OSError(errno.ENOSPC, "No space left on device"))
    assert attempted_bytes(RuntimeError(CPU_FAILURE)) == 2**30
    assert attempted_bytes(torch.OutOfMemoryError(CUDA_FAILURE)) == 2 * 2**30
    assert attempted_bytes(MemoryError()) is None


def failing_at(monkeypatch, module, name, make, after: int = 0):
    """``module.name`` raises ``make()`` from its ``after + 1``-th call on."""
    original, calls = getattr(module, name), []

    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise make()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, fail)


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_a_failed_allocation_in_the_training_step_stops_the_run_in_one_line(
    tmp_path, monkeypatch, kind
):
    """Epoch 2's second step runs out of memory: one line, exit 2, and the checkpoint and the
    metrics of epoch 1 byte for byte as they were (nothing of the half-taken step is saved)."""
    checkpoint = first_epoch(tmp_path)
    metrics = tmp_path / "checkpoint" / "output.metrics.jsonl"
    before = digest(checkpoint), digest(metrics)
    failing_at(monkeypatch, train, "training_step", FAILURES[kind], after=1)
    line = one_line(
        run(
            tmp_path,
            "invariance_by_gradient.py",
            *SMALL,
            "--resume",
            "output.pth",
            "--cut-off",
            "2",
        )
    )
    assert line.startswith(
        "invariance_by_gradient.py: error: out of memory in the training step (4 images per "
        "process on cpu)"
    )
    assert SAID[kind] in line if SAID[kind] else "tried to allocate" not in line
    assert "lower --batch-size" in line and "1.7 times" in line
    assert (
        "the last good checkpoint, checkpoint/output.pth, is intact (--resume keeps its "
        "--batch-size; more processes or a smaller batch under torchrun continue it)"
    ) in line
    assert (digest(checkpoint), digest(metrics)) == before


def test_a_failed_allocation_in_the_in_training_probe_names_its_flags(tmp_path, monkeypatch):
    failing_at(monkeypatch, train, "training_scores", FAILURES["system"])
    done = run(tmp_path, "invariance_by_gradient.py", *SMALL, "--test-freq", "1")
    line = one_line(done)
    assert (
        "out of memory in the probe or kNN on cpu: resume with --test-freq 0 --knn-freq 0" in line
    )
    assert "no checkpoint of this run was written yet" in line
    assert not (tmp_path / "checkpoint" / "output.pth").exists()


@pytest.mark.parametrize(
    ("module", "name", "flags", "said"),
    [
        (evaluation.session, "encode_sets", [],
         "the encoding (batches of 256 images on cpu); it tried to allocate 2.0 GiB: lower "
         "--batch-size"),
        (evaluation.session, "fit_and_score", [],
         "the probe's fit (29 × 128 features in float64 on cpu); it tried to allocate 2.0 GiB: "
         "lower --proportion (the labelled images fitted on)"),
        (evaluation.measures, "conditional_variance", ["--conditional-variance"],
         "the measure conditional_variance (5 images, batches of 256 images on cpu); it tried to "
         "allocate 2.0 GiB: lower --invariance-images or --batch-size"),
    ],
)  # fmt: skip
def test_a_failed_allocation_in_the_evaluation_names_the_step_and_its_flag(
    tmp_path, monkeypatch, module, name, flags, said
):
    """And a summary written by an earlier evaluation (--output) stays as it was."""
    checkpoint = first_epoch(tmp_path)
    out = tmp_path / "result.json"
    evaluate = ("lbfgs_linear_clf_spirograph.py", "--load-from", str(checkpoint), "--device",
                "cpu", "--num-workers", "0", "--output", str(out))  # fmt: skip
    assert run(tmp_path, *evaluate).returncode == 0
    before = digest(out)
    failing_at(monkeypatch, module, name, FAILURES["cuda"])
    line = one_line(run(tmp_path, *evaluate, *flags))
    assert line == f"lbfgs_linear_clf_spirograph.py: error: out of memory in {said}"
    assert digest(out) == before and json.loads(out.read_text())["mse"] > 0


LIMIT = 8 * 2**30  # torch starts under 8 GiB of address space on these machines; not under 3


def limited(*command: str, cwd) -> subprocess.CompletedProcess:
    """A project script in a process of its own whose address space is limited to `LIMIT`, as
    `ulimit -v` limits it on a shared node or in a container."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    return subprocess.run(
        [sys.executable, *command], cwd=cwd, preexec_fn=limit, capture_output=True, text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def batch_of_4096(tmp_path_factory):
    """A folder with 4,100 CIFAR-sized training images (tiny_data's random pixels) and a
    full-width checkpoint: the first convolution's output for 4,096 of them alone is 1 GiB."""
    folder = tmp_path_factory.mktemp("big")
    write_paths(folder, cifar10=write_cifar_pickles(folder / "data", per_class=410))
    write_checkpoint(folder / "checkpoint" / "wide.pth", "cifar10", 1.0, width=1.0)
    return folder


@pytest.mark.slow
def test_training_a_batch_that_cannot_fit_is_one_line_under_an_address_space_limit(
    batch_of_4096,
):
    """The issue's command on CIFAR-sized images. It replaces (--overwrite) an earlier run's
    checkpoint, which stays whole since nothing was saved. Today's code: a 30-line traceback
    ending in the allocator's RuntimeError, exit 1."""
    checkpoint = batch_of_4096 / "checkpoint" / "output.pth"
    checkpoint.write_bytes((batch_of_4096 / "checkpoint" / "wide.pth").read_bytes())
    before = digest(checkpoint)
    done = limited(
        str(REPO / "invariance_by_gradient.py"), "--dataset", "cifar10", "--arch", "resnet18",
        "--batch-size", "4096", "--lambda-gp", "0.01", "--device", "cpu", "--num-workers", "0",
        "--num-epochs", "1", "--overwrite", cwd=batch_of_4096,
    )  # fmt: skip
    assert one_line(done) == (
        "invariance_by_gradient.py: error: out of memory in the training step (4096 images per "
        "process on cpu); it tried to allocate 1.0 GiB: lower --batch-size or split it over "
        "more processes under torchrun (a GPU: also --amp); the penalty needs up to 1.7 times "
        "SimCLR's memory per image; no checkpoint of this run was written yet"
    )
    assert digest(checkpoint) == before


@pytest.mark.slow
def test_an_evaluation_batch_that_cannot_fit_is_one_line_under_an_address_space_limit(
    batch_of_4096,
):
    """Encoding 4,100 images at once; an earlier --output stays as it was. Today's code: a
    traceback ending in the allocator's RuntimeError, exit 1."""
    out = batch_of_4096 / "result.json"
    out.write_text('{"accuracy": 12.5}\n')
    done = limited(
        str(REPO / "lbfgs_linear_clf.py"), "--load-from", "wide.pth", "--device", "cpu",
        "--num-workers", "0", "--batch-size", "4100", "--output", str(out), cwd=batch_of_4096,
    )  # fmt: skip
    assert one_line(done) == (
        "lbfgs_linear_clf.py: error: out of memory in the encoding (batches of 4100 images on "
        "cpu); it tried to allocate 1.0 GiB: lower --batch-size"
    )
    assert out.read_text() == '{"accuracy": 12.5}\n'


def test_a_process_that_loses_a_failed_peer_stops_in_one_line(monkeypatch):
    """Under torchrun a collective whose peer is gone raises gloo's RuntimeError; it becomes one
    line. Outside torchrun, or for any other RuntimeError, nothing changes."""
    import utils.distributed
    from utils.cli import TrainingError

    gone = RuntimeError("[pair.cc:561] Connection closed by peer [127.0.0.1]:34192")
    with pytest.raises(RuntimeError, match="closed by peer"):  # one process: not ours to say
        with utils.distributed.stopped_with_a_failed_process():
            raise gone
    monkeypatch.setattr(utils.distributed, "is_distributed", lambda: True)
    with pytest.raises(TrainingError, match="another process of the run failed"):
        with utils.distributed.stopped_with_a_failed_process():
            raise gone
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with utils.distributed.stopped_with_a_failed_process():
            raise RuntimeError("shape mismatch")
