"""The benchmarks run at tiny sizes and report what they claim: the throughput benchmark with
every path under --amp, the precision benchmark's errors, and the ImageNet crop benchmark's
device path, whose crops are those of `augmentation.crop` for each image on its own."""

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
    argv += ["--num-workers", "0", "--width", "0.125"]
    summary = throughput.main(throughput.get_args_parser().parse_args([*argv, "--amp", "bf16"]))
    assert summary["amp"] == "bf16" and summary["width"] == 0.125
    assert set(summary["images_per_s"]) == {
        "bound", "plain", "penalty", "relative", "penalty_gp_every_4",
        "epoch_spirograph", "epoch_cifar10", "epoch_cifar10_naive",
    }  # fmt: skip
    assert all(rate > 0 for rate in summary["images_per_s"].values())
    rates = summary["images_per_s"]  # the ratio of the two times (rates rounded to 0.01 img/s)
    assert summary["relative_over_penalty"] == pytest.approx(
        rates["penalty"] / rates["relative"],
        rel=0.005 / rates["penalty"] + 0.005 / rates["relative"] + 1e-3,
    )
    # The lazy run's mean step: one penalised step and three plain ones (no timing asserted).
    lazy = (summary["penalty_over_plain"] + 3) / 4
    assert summary["penalty_over_plain_gp_every_4"] == pytest.approx(lazy, abs=2e-3)


def test_amp_precision_benchmark_measures_rounding_not_nothing():
    args = amp_precision.get_args_parser().parse_args(["--batch-size", "2", "--width", "0.125"])
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


def test_gpu_epoch_refuses_fewer_images_than_a_batch(tmp_path):
    from tiny_data import write_cifar_pickles

    from benchmarks import gpu_epoch
    from utils.cli import UsageError

    folder = write_cifar_pickles(tmp_path / "data", per_class=2)
    argv = ["--cifar", str(folder), "--batch-size", "8", "--images", "4", "--device", "cpu"]
    with pytest.raises(UsageError, match="less than one batch"):
        gpu_epoch.main(gpu_epoch.get_args_parser().parse_args(argv))


def test_the_pairwise_nt_xent_the_memory_benchmark_measures_is_nt_xent():
    """The broadcast form of `benchmarks/loss_memory.py` must compute the same loss as the
    project's, or its memory is that of another computation."""
    from benchmarks.loss_memory import pairwise_nt_xent
    from models.invclr import nt_xent

    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=gen).double(), torch.randn(6, 5, generator=gen).double()
    assert pairwise_nt_xent(z1, z2, 0.5).item() == pytest.approx(nt_xent(z1, z2, 0.5).item())


def test_knn_benchmark_times_both_monitors_on_one_encoding():
    from benchmarks import knn

    args = ["--train", "300", "--test", "40", "--width", "0.125", "--no-memory"]
    summary = knn.main(knn.get_args_parser().parse_args(args))
    assert (summary["n_train"], summary["n_test"], summary["dim"]) == (300, 40, 64)
    assert summary["probe"]["converged"] and "peak_mib" not in summary
    assert set(summary["knn_accuracy"]) == {"weighted", "majority"}
    seconds = [summary[f"{k}_seconds"] for k in ("encode", "knn", "probe_fit")]
    assert all(s > 0 for s in seconds)
    encode, knn_s, fit = seconds  # the ratio is of the two calls, each with the encoding
    assert summary["knn_call_over_probe_call"] == pytest.approx((encode + knn_s) / (encode + fit))
    assert summary["knn_over_probe_fit"] == pytest.approx(knn_s / fit)


def test_knn_benchmark_on_a_checkpoint_scores_what_the_evaluation_scores(tmp_path, monkeypatch):
    """--load-from times training's monitors on the checkpoint's own encoding: the kNN numbers
    are those `lbfgs_linear_clf.py --knn` gives."""
    from test_evaluation import write_checkpoint
    from tiny_data import write_cifar_pickles, write_paths

    import lbfgs_linear_clf
    from benchmarks import knn

    monkeypatch.chdir(tmp_path)
    write_paths(tmp_path, cifar10=write_cifar_pickles(tmp_path / "data", per_class=2))
    checkpoint = write_checkpoint(tmp_path / "c.pth", "cifar10", 1.0, width=0.0625)
    args = ["--load-from", str(checkpoint), "--no-memory"]
    summary = knn.main(knn.get_args_parser().parse_args(args))
    assert (summary["n_train"], summary["n_test"], summary["dim"]) == (50, 10, 32)
    evaluated = lbfgs_linear_clf.main(lbfgs_linear_clf.get_args_parser().parse_args(
        ["--load-from", str(checkpoint), "--device", "cpu", "--num-workers", "0", "--knn"]
    ))  # fmt: skip
    assert summary["probe"]["accuracy"] == evaluated["accuracy"]
    assert summary["knn_accuracy"] == {
        k: evaluated["knn"][k]["accuracy"] for k in summary["knn_accuracy"]
    }


# In a pytest worker, memory an earlier test freed can serve the allocation without growing the
# resident set (it failed once that way in make test): slow until it runs in a fresh process.
@pytest.mark.slow
def test_the_peak_memory_helper_sees_an_allocation_it_is_given():
    """The kNN and loss benchmarks' memory figures come from `peak_added_mib`: 64 MiB written
    and freed inside it must count, however briefly they were resident."""
    import time

    from benchmarks.loss_memory import peak_added_mib

    def work():
        held = torch.ones(16 * 2**20)  # 64 MiB of float32
        time.sleep(0.1)  # resident long enough for the sampler on a loaded machine
        return held.sum().item()

    added, total = peak_added_mib(work)
    assert total == 16 * 2**20 and added >= 60
