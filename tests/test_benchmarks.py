"""The benchmarks run at tiny sizes and report what they claim: the throughput benchmark with
every path under --amp, the precision benchmark's errors, and the ImageNet crop benchmark's
device path, whose crops are those of `augmentation.crop` for each image on its own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from augmentation.crop import resized_crop
from augmentation.views import to_unit_float
from benchmarks import amp_precision, throughput
from benchmarks import imagenet_crop as bench


def test_throughput_benchmark_reports_every_rate_and_ratio():
    argv = ["--batch-size", "2", "--device", "cpu", "--steps", "1", "--epoch-steps", "1"]
    argv += ["--num-workers", "0"]
    summary = throughput.main(throughput.get_args_parser().parse_args([*argv, "--amp", "bf16"]))
    assert summary["amp"] == "bf16"
    assert set(summary["images_per_s"]) == {
        "bound", "plain", "penalty", "penalty_gp_every_4",
        "epoch_spirograph", "epoch_cifar10", "epoch_cifar10_naive",
    }  # fmt: skip
    assert all(rate > 0 for rate in summary["images_per_s"].values())
    # The lazy run's mean step: one penalised step and three plain ones (no timing asserted).
    lazy = (summary["penalty_over_plain"] + 3) / 4
    assert summary["penalty_over_plain_gp_every_4"] == pytest.approx(lazy, abs=2e-3)


def test_amp_precision_benchmark_measures_rounding_not_nothing():
    args = amp_precision.get_args_parser().parse_args(["--batch-size", "2"])
    summary = amp_precision.main(args)
    errors = summary["errors"]
    for name in ("fp32", "bf16", "fp16"):
        assert all(0 < v < float("inf") for v in errors[name].values()), name
    # float32 is far closer to float64 than bfloat16 (8 mantissa bits) is.
    assert errors["fp32"]["ntxent_grad_rel_error"] < errors["bf16"]["ntxent_grad_rel_error"] / 10
    assert summary["penalty_grad_other_draw"] > 0


def test_benchmark_runs_on_a_tiny_synthetic_tree():
    argv = ["--num-images", "8", "--batch-size", "4", "--num-workers", "0", "--size", "16"]
    args = bench.get_args_parser().parse_args([*argv, "--image-side", "60"])
    summary = bench.main(args)
    assert (summary["images"], summary["warmup_batches"], summary["timed_batches"]) == (8, 1, 1)
    assert set(summary["images_per_s"]) == {"decode", "workers", "device"}
    assert all(rate > 0 for rate in summary["images_per_s"].values())
    assert summary["device_over_workers"] > 0
    assert 30 <= summary["mean_height"] <= 120 and 30 <= summary["mean_width"] <= 120


def test_benchmark_refuses_more_batches_than_images():
    argv = ["--num-images", "8", "--batch-size", "4", "--num-workers", "0", "--batches", "2"]
    with pytest.raises(bench.UsageError, match="need 12 images; there are 8"):
        bench.main(bench.get_args_parser().parse_args([*argv, "--image-side", "40"]))


def test_device_crops_of_a_padded_batch_equal_crops_of_each_image():
    gen = torch.Generator().manual_seed(1)
    shapes = [(37, 52), (60, 41), (23, 23), (50, 70)]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen) for h, w in shapes]
    padded, sizes = bench.pad_collate(images)
    assert padded.shape == (4, 3, 60, 70)
    assert sizes.tolist() == [list(s) for s in shapes]
    views = bench.device_views(padded, sizes, 16, torch.Generator().manual_seed(5))
    # The same generator state again: the boxes of the first view.
    boxes = bench.boxes_for(sizes, torch.Generator().manual_seed(5))
    for i, image in enumerate(images):
        alone = resized_crop(to_unit_float(image)[None], boxes[i : i + 1], 16)
        torch.testing.assert_close(views[0][i : i + 1], alone, rtol=0, atol=1e-5)


def test_invariance_study_first_order_term_is_the_small_step_limit(monkeypatch):
    """For draws θ′ a tiny step from θ the first-order term equals the actual change; the
    concentration is the squared norm of the mean normalised representation."""
    from augmentation.spirograph import (
        render_spirograph,
        sample_data_params,
        sample_transform_params,
    )
    from augmentation.views import SpirographViews
    from benchmarks import invariance_study
    from models import ResNetEncoder

    gen = torch.Generator().manual_seed(0)
    data, theta = sample_data_params(16, generator=gen), sample_transform_params(16, generator=gen)
    steps = [theta + 1e-3 * torch.randn(16, 6, generator=gen) for _ in range(3)]
    draws = iter([theta, *steps])
    monkeypatch.setattr(SpirographViews, "sample_nuisance", lambda self, n, **_: next(draws))
    torch.manual_seed(0)
    encoder = ResNetEncoder("resnet18", "cifar", width=0.125).eval()
    row = invariance_study.study(encoder, data, 3, gen)
    assert row["first_order_over_actual"] == pytest.approx(1, rel=0.05)
    with torch.no_grad():
        h = encoder(render_spirograph(data, steps[0])).double()
    z = torch.nn.functional.normalize(h, dim=1)
    assert row["concentration"] == pytest.approx(z.mean(0).pow(2).sum().item(), rel=1e-3)


def test_old_probe_benchmark_compares_against_the_exact_minimiser(tmp_path):
    """The old probe comes from the git history (float32, stopped at its cap); the exact fit it
    is compared with must have the lower objective, at a gradient norm within the tolerance."""
    from test_evaluation import write_checkpoint

    from benchmarks import old_probe

    try:
        old = old_probe.old_probe_module()
    except old_probe.UsageError:
        pytest.skip("this clone has no git history to read the old probe from")
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(0))
    assert old.fit_linear(x, x[:, :2], 2, task="regression", reg_weight=0.0).model.weight.dtype == (
        torch.float32
    )
    path = write_checkpoint(tmp_path / "s.pth", "spirograph", 0.002)
    args = old_probe.get_args_parser().parse_args([str(path), "--random-init"])
    rows = old_probe.main(args)
    assert set(rows) == {"s", "s at random initialisation"}
    for row in rows.values():
        assert row["exact"]["grad_norm"] <= 1e-6 and row["exact"]["iterations"] == 0
        assert row["exact"]["objective"] <= row["old"]["objective"] * (1 + 1e-12)


def test_compare_checkpoints_finds_one_changed_bit():
    from benchmarks.compare_checkpoints import compare

    def state(weight, loss=1.0, seconds=3.0):
        return {
            "encoder": {"w": weight},
            "head": {"v": torch.ones(2)},
            "results": [{"epoch": 0, "loss": loss, "time_s": seconds}],
        }

    weight = torch.rand(5)
    nudged = weight.clone()
    nudged[2] = torch.nextafter(nudged[2], torch.tensor(2.0))
    assert compare(state(weight), state(weight.clone(), seconds=9.0)) == (2, 2, True)
    assert compare(state(weight), state(nudged)) == (1, 2, True)
    assert compare(state(weight), state(weight, loss=1.5)) == (2, 2, False)


def test_gpu_epoch_benchmark_times_both_epochs_on_tiny_data(tmp_path):
    from tiny_data import write_cifar_pickles

    from benchmarks import gpu_epoch

    folder = write_cifar_pickles(tmp_path / "data", per_class=2)  # 50 training images
    argv = ["--cifar", str(folder), "--batch-size", "8", "--images", "16", "--device", "cpu"]
    summary = gpu_epoch.main(gpu_epoch.get_args_parser().parse_args(argv))
    assert summary["images"] == 16 and summary["gpu"] is None
    for name in ("plain", "penalty"):
        assert summary[name]["seconds"] > 0 and summary[name]["images_per_s"] > 0
        assert summary[name]["peak_gpu_memory_gb"] is None  # only on CUDA
    assert summary["penalty"]["loss"] != summary["plain"]["loss"]  # the penalty acted


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_gpu_check_refuses_in_one_line_without_cuda_and_creates_nothing(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    before = sorted(p.name for p in repo.iterdir())
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    script = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "/nonexistent"], cwd=repo,
        env={**env, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert script.returncode == 2 and script.stdout == ""
    assert script.stderr.splitlines() == [
        f"gpu-check: {sys.executable} sees no CUDA GPU (or has no torch); run this on a GPU machine"
    ]
    target = subprocess.run(
        ["make", "-s", "gpu-check", f"PYTHON={sys.executable}", "CIFAR=/nonexistent"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert target.returncode != 0 and "sees no CUDA GPU" in target.stderr
    assert sorted(p.name for p in repo.iterdir()) == before and not any(tmp_path.iterdir())


def test_training_needs_neither_matplotlib_nor_tqdm(tmp_path):
    """The GPU machine's own python3 may have torch and torchvision only: training (and so the
    GPU check's parts) must run without the plotting and progress-bar packages."""
    repo = Path(__file__).resolve().parent.parent
    code = f"""
import sys
sys.modules["matplotlib"] = sys.modules["tqdm"] = None  # import fails, as if not installed
sys.path.insert(0, {str(repo)!r})
import invariance_by_gradient as train
args = train.get_args_parser().parse_args(["--dataset", "spirograph", "--arch", "resnet18",
    "--width", "0.25", "--proportion", "0.0001", "--batch-size", "4", "--num-epochs", "1",
    "--test-freq", "0", "--device", "cpu", "--checkpoint-dir", {str(tmp_path)!r}])
print(train.main(args))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "output.pth").is_file() and "epoch    1/1" in out.stdout


def test_compare_checkpoints_exit_status_and_one_line_errors(tmp_path):
    from utils.checkpoint import save_checkpoint

    def write(name, weight):
        state = {"encoder": {"w": weight}, "head": {}, "results": [{"loss": 1.0, "time_s": 1}]}
        return str(save_checkpoint(state, tmp_path / name))

    a, b = write("a.pth", torch.ones(3)), write("b.pth", torch.ones(3))
    c = write("c.pth", torch.tensor([1.0, 1.0, 2.0]))
    encoder_only = str(save_checkpoint({"encoder": {"w": torch.ones(3)}}, tmp_path / "e.pth"))

    def status(*files):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.compare_checkpoints", *files],
            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.returncode, out.stdout + out.stderr

    assert status(a, b)[0] == 0 and "1/1 encoder and head tensors" in status(a, b)[1]
    assert status(a, c)[0] == 1
    for bad in ([a, str(tmp_path / "missing.pth")], [a, encoder_only]):
        code, text = status(*bad)
        assert code == 2 and "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_gpu_epoch_refuses_fewer_images_than_a_batch(tmp_path):
    from tiny_data import write_cifar_pickles

    from benchmarks import gpu_epoch
    from utils.cli import UsageError

    folder = write_cifar_pickles(tmp_path / "data", per_class=2)
    argv = ["--cifar", str(folder), "--batch-size", "8", "--images", "4", "--device", "cpu"]
    with pytest.raises(UsageError, match="less than one batch"):
        gpu_epoch.main(gpu_epoch.get_args_parser().parse_args(argv))


def test_evaluation_suite_benchmark_records_every_measure_and_its_cost(tmp_path, capsys):
    from test_evaluation import write_checkpoint

    from benchmarks import evaluation_suite

    checkpoint = write_checkpoint(tmp_path / "s.pth", "spirograph", 0.0005)
    args = evaluation_suite.get_args_parser().parse_args(
        [str(checkpoint), "--only-variance", "--random-init", "--out", str(tmp_path / "out")]
    )
    (record,) = evaluation_suite.main(args)
    assert (tmp_path / "out" / "s-random.json").is_file()
    assert record["result"]["random_init"] is True
    assert set(record["result"]["measure_seconds"]) == {"conditional_variance", "authors_variance"}
    assert "x the probe" in capsys.readouterr().out
    text = evaluation_suite.table(tmp_path / "out")
    assert "| conditional variance, theta (εᵀẑ) |" in text and "| weights | random init |" in text
