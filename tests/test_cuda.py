"""The GPU-only paths (marker `cuda`; skipped without a CUDA GPU, so `make test` stays on the CPU).

`make gpu-check` runs them on a GPU machine, through pytest where it is installed and otherwise
through the small runner at the bottom (a GPU machine without network may lack pytest).
"""

import contextlib
import shutil
import sysconfig
import tempfile
from pathlib import Path

import torch

import invariance_by_gradient as train
from augmentation.spirograph import sample_data_params
from augmentation.views import SpirographViews
from models.invclr import Networks

try:
    import pytest
except ImportError:  # the runner below needs none of it
    pytest = None

CUDA = torch.cuda.is_available()


class Skipped(Exception):
    """A test that cannot run here (the runner counts it apart from passes and failures)."""


def skip(reason: str) -> None:
    if pytest is not None:
        pytest.skip(reason)
    raise Skipped(reason)


CPU = torch.device("cpu")
if pytest is not None:
    pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]


class RecordedViews(SpirographViews):
    """Spirograph views whose random draws are recorded on the first run (CPU) and replayed,
    moved to the step's device, on the second: CPU and CUDA generators give different numbers,
    so the same draws have to be passed to both."""

    def __init__(self, tape: list[torch.Tensor] | None = None) -> None:
        super().__init__(generator=torch.Generator().manual_seed(2))
        self.tape, self.replay = (tape, True) if tape is not None else ([], False)
        self.position = 0

    def _next(self, make, device: torch.device) -> torch.Tensor:
        if not self.replay:
            self.tape.append(make().detach().cpu().clone())
        drawn = self.tape[self.position].to(device, copy=True)  # a fresh leaf each time
        self.position += 1
        return drawn

    def draw(self, sampler, rows, *args, device, **kwargs):
        parent = super().draw
        return self._next(lambda: parent(sampler, rows, *args, device=CPU, **kwargs), device)

    def fresh_nuisance(self, num_samples, rows, device):
        parent = super().fresh_nuisance
        return self._next(lambda: parent(num_samples, rows, CPU), device)

    def signs(self, like, sampler):
        parent = super().signs
        return self._next(lambda: parent(like.detach().cpu(), sampler), like.device)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def one_step(device: torch.device, views: SpirographViews, flags: list[str] = ()):
    """One penalised step of a seeded ResNet-18 on a fixed Spirograph batch: (values, the first
    convolution's weight after the step, the penalty as the step computed it)."""
    args = train.get_args_parser().parse_args(["--arch", "resnet18", "--batch-size", "8", *flags])
    torch.manual_seed(0)
    encoder, head, optimizer, _ = train.build_model(args, "cifar", device)
    compiled = torch.compile(encoder) if args.compile else None
    nets = Networks(encoder, head, compiled=compiled, amp_dtype=train.AMP_DTYPES[args.amp],
                    channels_last=args.channels_last)  # fmt: skip
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None
    batch = sample_data_params(8, generator=torch.Generator().manual_seed(1)).to(device)
    seen = []
    real = train.gradient_penalty
    train.gradient_penalty = lambda *a, **k: seen.append(real(*a, **k)) or seen[-1]
    try:
        values = train.training_step(
            nets, views, optimizer, batch, batch, temperature=0.5, penalty_weight=0.1,
            gp_upper_limit=1000.0, scaler=scaler,
        )  # fmt: skip
    finally:
        train.gradient_penalty = real
    return values, encoder.conv1.weight.detach(), seen[0] if seen else None


def test_cuda_step_equals_the_cpu_step_in_float64():
    """The same draws, weights and batch: loss, penalty and the weights after the LARS step agree
    to float64 rounding (different kernels sum in different orders)."""
    with default_dtype(torch.float64):
        cpu_views = RecordedViews()
        v_cpu, w_cpu, _ = one_step(CPU, cpu_views)
        v_gpu, w_gpu, _ = one_step(torch.device("cuda"), RecordedViews(cpu_views.tape))
    assert v_cpu[1] > 0  # the penalty acted
    torch.testing.assert_close(v_gpu.cpu(), v_cpu, rtol=1e-7, atol=0)
    torch.testing.assert_close(w_gpu.cpu(), w_cpu, rtol=1e-7, atol=1e-12)


def test_amp_steps_run_and_the_penalty_stays_float32():
    cuda = torch.device("cuda")
    tape = RecordedViews()
    one_step(CPU, tape)  # one recording serves the three runs below
    exact, _, penalty = one_step(cuda, RecordedViews(tape.tape))
    assert penalty.dtype == torch.float32 and exact[1] > 0
    for amp in ("bf16", "fp16"):
        values, weight, amp_penalty = one_step(cuda, RecordedViews(tape.tape), ["--amp", amp])
        assert amp_penalty.dtype == torch.float32, amp
        assert torch.isfinite(values).all() and torch.isfinite(weight).all(), amp
        # The penalised view is encoded in float32 under --amp: the penalty is float32 arithmetic.
        torch.testing.assert_close(values[1], exact[1], rtol=1e-4, atol=0)


@contextlib.contextmanager
def no_tf32():
    """Exact float32 on CUDA: cuDNN and matmuls may use TF32 (10-bit mantissas) by default, which
    the penalty's second derivatives amplify past any comparison's tolerance."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def compiler_available() -> bool:
    """torch.compile's GPU code (Triton) builds C with the system compiler and Python's headers."""
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return include.is_file() and any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


def agrees_with_eager(flags: list[str]) -> None:
    cuda = torch.device("cuda")
    tape = RecordedViews()
    one_step(CPU, tape)
    with no_tf32():
        eager, w_eager, _ = one_step(cuda, RecordedViews(tape.tape))
        values, weight, _ = one_step(cuda, RecordedViews(tape.tape), flags)
    # Only the summation order differs; the penalty amplifies it (3e-3 on the CPU too).
    torch.testing.assert_close(values, eager, rtol=3e-3, atol=1e-5)
    torch.testing.assert_close(weight, w_eager, rtol=3e-3, atol=1e-5)


def test_channels_last_runs_and_agrees_with_eager():
    agrees_with_eager(["--channels-last"])


def test_compile_runs_and_agrees_with_eager():
    if not compiler_available():
        skip("torch.compile needs a C compiler and Python.h on this machine")
    agrees_with_eager(["--compile"])


def test_a_cuda_checkpoint_resumes_on_the_cpu_and_back():
    with tempfile.TemporaryDirectory() as folder:
        common = ["--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25",
                  "--proportion", "0.0002", "--batch-size", "8", "--num-epochs", "3",
                  "--test-freq", "0", "--lambda-gp", "0.01", "--gp-upper-limit", "1000",
                  "--num-workers", "0", "--checkpoint-dir", folder]  # fmt: skip

        def run(*flags):
            return train.main(train.get_args_parser().parse_args([*common, *flags]))

        first = run("--device", "cuda", "--cut-off", "1", "--filename", "gpu")
        second = run("--resume", str(first), "--device", "cpu", "--cut-off", "2",
                     "--filename", "cpu")  # fmt: skip
        third = run("--resume", str(second), "--device", "cuda", "--cut-off", "3",
                    "--filename", "back")  # fmt: skip
        states = [torch.load(p, weights_only=True) for p in (first, second, third)]
        assert [len(s["results"]) for s in states] == [1, 2, 3]
        assert states[0]["results"][0]["peak_gpu_memory_gb"] > 0
        assert "peak_gpu_memory_gb" not in states[1]["results"][1]  # the CPU epoch
        assert all(torch.isfinite(t).all() for t in states[2]["encoder"].values())
        assert Path(third).name == "back.pth"


def test_the_evaluation_reproduces_the_in_training_probe_on_cuda():
    """A CUDA generator's stream depends on the size of each call: training's probe and the
    evaluation script draw Spirograph's views in batches of one size (ENCODE_BATCH_SIZE, not the
    training --batch-size), so the run's seed reproduces its in-training probe on a GPU too."""
    import lbfgs_linear_clf_spirograph as evaluate

    with tempfile.TemporaryDirectory() as folder:
        flags = ["--dataset", "spirograph", "--arch", "resnet18", "--width", "0.25",
                 "--proportion", "0.003", "--batch-size", "8", "--num-epochs", "1",
                 "--test-freq", "1", "--num-workers", "0", "--device", "cuda", "--seed", "3",
                 "--checkpoint-dir", folder]  # fmt: skip
        path = train.main(train.get_args_parser().parse_args(flags))
        probe = torch.load(path, weights_only=True)["results"][0]["test_mse"]
        result = evaluate.main(
            evaluate.get_args_parser().parse_args(["--load-from", str(path), "--device", "cuda"])
        )
        assert result["views"] == "augmented" and result["num_passes"] == 1
        assert result["mse"] == probe, (result["mse"], probe)


def test_knn_votes_on_the_gpu_as_on_the_cpu():
    """kNN on the encoder's device: the same predictions from CUDA tensors in float64 (tie-free
    features), blocks of test rows included, and the answer comes back on the GPU."""
    from evaluation.knn import knn_predict

    gen = torch.Generator().manual_seed(0)
    train_x = torch.randn(3000, 64, generator=gen, dtype=torch.float64)
    train_y = torch.randint(0, 10, (3000,), generator=gen)
    test_x = torch.randn(700, 64, generator=gen, dtype=torch.float64)
    for k, temperature in ((200, 0.1), (10, None)):
        on_cpu = knn_predict(train_x, train_y, test_x, 10, k=k, temperature=temperature)
        on_gpu = knn_predict(train_x.cuda(), train_y.cuda(), test_x.cuda(), 10, k=k,
                             temperature=temperature, chunk=256)  # fmt: skip
        assert on_gpu.device.type == "cuda"
        assert torch.equal(on_gpu.cpu(), on_cpu)


def test_a_batch_that_does_not_fit_on_the_gpu_is_one_line():
    """torch.OutOfMemoryError inside the step becomes utils.memory's one line, naming the step,
    the batch per process and the device. Width 4 with the penalty at batch 4096 needs more
    than 200 GB by the CPU's figures (docs/checkpoints.md), beyond an H200's 139 GiB."""
    from utils.memory import OutOfMemory

    with tempfile.TemporaryDirectory() as folder:
        flags = ["--dataset", "spirograph", "--arch", "resnet18", "--width", "4",
                 "--proportion", "0.05", "--batch-size", "4096", "--num-epochs", "1",
                 "--test-freq", "0", "--num-workers", "0", "--device", "cuda",
                 "--lambda-gp", "0.01", "--checkpoint-dir", folder]  # fmt: skip
        try:
            train.main(train.get_args_parser().parse_args(flags))
        except OutOfMemory as error:
            message = str(error)
        else:
            raise AssertionError("a 4096-image batch at width 4 fitted on this GPU")
        finally:
            torch.cuda.empty_cache()
        assert message.startswith(
            "out of memory in the training step (4096 images per process on cuda"
        ), message
        assert "it tried to allocate" in message and "lower --batch-size" in message


if __name__ == "__main__":
    # Without pytest: run every test here, one line each, and exit non-zero if one failed.
    import sys
    import traceback

    if not CUDA:
        print("test_cuda: no CUDA GPU visible; nothing to run")
        sys.exit(2)
    failed = skipped = 0
    tests = [(name, f) for name, f in sorted(globals().items()) if name.startswith("test_")]
    for name, test in tests:
        try:
            test()
            print(f"PASSED {name}", flush=True)
        except Skipped as reason:
            skipped += 1
            print(f"SKIPPED {name}: {reason}", flush=True)
        except Exception:  # a report, not a handler: every test runs
            failed += 1
            print(f"FAILED {name}\n{traceback.format_exc()}", flush=True)
    print(f"{len(tests) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)
