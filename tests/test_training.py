"""End-to-end runs of invariance_by_gradient.py on tiny data (CPU, ResNet-18, a few steps)."""

import subprocess
from pathlib import Path

import pytest
import torch
from inprocess import run_script
from tiny_data import write_cifar_pickles, write_image_folder, write_paths, write_stl10

import invariance_by_gradient as train
import utils.resume
import utils.run
from augmentation.views import NaturalViews
from models.invclr import Networks
from models.pretrained import load_encoder
from utils.checkpoint import CheckpointError, save_checkpoint
from utils.schedule import ramp_cosine_lr

REPO = Path(__file__).resolve().parent.parent
# End-to-end runs test the pipeline, not the network: an eighth of the channels (8 in the first
# stage) costs a fraction of the full width's compute, and a flag given later overrides it.
TEST_WIDTH = "0.125"
CHECKPOINT_KEYS = {
    "format",
    "version",
    "encoder",
    "head",
    "scaler",
    "next",
    "optimizer",
    "scheduler",
    "epoch",
    "args",
    "results",
    "rng",
    "git",
}


def run(*flags: str) -> Path:
    args = train.get_args_parser().parse_args(
        [
            "--arch",
            "resnet18",
            "--width",
            TEST_WIDTH,
            "--device",
            "cpu",
            "--num-workers",
            "0",
            *flags,
        ]
    )
    return train.main(args)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


SPIRO = ["--dataset", "spirograph", "--proportion", "0.0001", "--batch-size", "4"]


def test_spirograph_run_writes_checkpoints_with_plain_types(workdir):
    final = run(
        *SPIRO,
        "--num-epochs",
        "2",
        "--save-freq",
        "1",
        "--test-freq",
        "1",
        "--lambda-gp",
        "1e-2",
        "--gp-upper-limit",
        "1000",
        "--filename",
        "demo",
    )
    assert final == Path("checkpoint/demo.pth")
    for name in ("demo_epoch001.pth", "demo_epoch002.pth", "demo.pth"):  # 1-based, as logged
        assert (workdir / "checkpoint" / name).is_file()
    state = load(final)
    assert set(state) == CHECKPOINT_KEYS
    assert state["epoch"] == 1 and state["args"]["lambda_gp"] == 1e-2
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state["encoder"])
    rows = state["results"]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(r["penalty"] > 0 and r["test_mse"] > 0 for r in rows)
    assert all(0 <= r["clamp_fraction"] <= 1 and r["gp_upper_limit"] > 0 for r in rows)
    assert not any("spread" in r for r in rows)  # the paper's penalty has no spread
    assert rows[0]["loss"] == pytest.approx(
        rows[0]["contrastive_loss"] + 1e-2 * rows[0]["penalty"], rel=1e-5
    )


@pytest.mark.parametrize("layout", ["pickle", "image-folder"])
def test_cifar10_one_epoch(workdir, layout):
    if layout == "pickle":
        root = write_cifar_pickles(workdir / "data")
    else:
        # Two training images per class: with one, the probe's classes are single points, a
        # problem L-BFGS needs thousands of iterations for (a few dozen with two).
        root = write_image_folder(workdir / "data", {"train": 2, "test": 1}, classes=10, size=32)
    write_paths(workdir, cifar10=root)
    state = load(
        run(
            "--dataset",
            "cifar10",
            "--batch-size",
            "8",
            "--num-epochs",
            "1",
            "--test-freq",
            "1",
            "--lambda-gp",
            "0.1",
        )
    )
    row = state["results"][0]
    assert 0 <= row["test_accuracy"] <= 100 and row["test_loss"] > 0 and row["penalty"] > 0


def test_cifar100_pickles(workdir):
    write_paths(workdir, cifar100=write_cifar_pickles(workdir / "data", "cifar100", per_class=1))
    state = load(
        run("--dataset", "cifar100", "--batch-size", "64", "--num-epochs", "1", "--test-freq", "0")
    )
    row = state["results"][0]
    assert row["contrastive_loss"] > 0
    # SimCLR: a penalty of 0 on every step, and none of the penalty's other fields.
    assert row["penalty"] == 0.0 and not {"clamp_fraction", "gp_upper_limit", "spread"} & set(row)


def test_stl10_pretrains_on_train_and_unlabeled(workdir, capsys):
    write_paths(workdir, stl10=write_stl10(workdir / "data", train_per_class=2))
    state = load(
        run("--dataset", "stl10", "--batch-size", "8", "--num-epochs", "1", "--test-freq", "1")
    )
    assert "26 images" in capsys.readouterr().out  # 20 labelled + 6 unlabeled
    assert "test_accuracy" in state["results"][0]


def test_imagenet_image_folder_crops_in_workers(workdir, capsys):
    root = write_image_folder(
        workdir / "data", {"train": 2, "val": 1}, classes=2, size=[(64, 48), (40, 70)]
    )
    write_paths(workdir, imagenet=root)
    state = load(
        run(
            "--dataset",
            "imagenet",
            "--batch-size",
            "2",
            "--proportion",
            "0.5",
            "--num-epochs",
            "1",
            "--test-freq",
            "0",
            "--lambda-gp",
            "0.1",
        )
    )
    assert "on imagenet: 2 images" in capsys.readouterr().out  # --proportion: 1 of 2 per class
    assert state["results"][0]["penalty"] > 0
    assert state["args"]["blur"] is None  # resolved to on for ImageNet at run time


def test_cut_off_stops_early_on_the_full_schedule(workdir):
    state = load(
        run(*SPIRO, "--num-epochs", "10", "--cut-off", "1", "--cosine-anneal", "--test-freq", "0")
    )
    assert [r["epoch"] for r in state["results"]] == [0]
    assert state["results"][0]["lr"] == pytest.approx(ramp_cosine_lr(0, 1.5 * 4 / 256, 10))


def test_resume_continues_epochs_rate_and_weights(workdir):
    common = [
        *SPIRO,
        "--num-epochs",
        "3",
        "--cosine-anneal",
        "--test-freq",
        "0",
        "--lambda-gp",
        "0.01",
    ]
    straight = load(run(*common, "--cut-off", "2", "--filename", "straight"))
    run(*common, "--cut-off", "1", "--filename", "split")
    resumed = load(run("--resume", "split.pth", "--cut-off", "2"))
    assert [r["epoch"] for r in resumed["results"]] == [0, 1]
    base = 1.5 * 4 / 256
    assert resumed["results"][1]["lr"] == pytest.approx(ramp_cosine_lr(1, base, 3))
    for key, value in straight["encoder"].items():
        assert torch.equal(value, resumed["encoder"][key]), key


@pytest.mark.parametrize(("limit", "fraction"), [("1e-9", 1.0), ("1e9", 0.0)])
def test_clamp_fraction_is_recorded_and_a_clamped_epoch_warned(workdir, capsys, limit, fraction):
    """The share of penalised steps at which the penalty sat at --gp-upper-limit (and so passed
    no gradient) goes into the results, the metrics file and the epoch line; more than half of
    an epoch's is a warning."""
    path = run(*SPIRO, "--num-epochs", "2", "--test-freq", "0", "--lambda-gp", "0.01",
               "--gp-upper-limit", limit, "--gp-every", "2")  # fmt: skip
    rows = load(path)["results"]
    assert [r["clamp_fraction"] for r in rows] == [fraction, fraction]
    assert all(r["gp_upper_limit"] == float(limit) for r in rows)
    lines = (workdir / "checkpoint" / "output.metrics.jsonl").read_text().splitlines()
    assert all(f'"clamp_fraction": {fraction}' in line for line in lines)
    out = capsys.readouterr().out
    assert f"clamped {fraction:.0%}" in out
    assert out.count("warning: the penalty was at its clamp") == (2 if fraction else 0)


def test_no_clamp_fraction_without_the_penalty(workdir, capsys):
    rows = load(run(*SPIRO, "--num-epochs", "1", "--test-freq", "0"))["results"]
    assert "clamp_fraction" not in rows[0] and "clamped" not in capsys.readouterr().out


def test_resume_on_another_kind_of_device_reseeds_reproducibly(workdir, capsys):
    """A GPU run's augmentation generator cannot continue on the CPU (nor the reverse); the
    resumed run says so and draws from a seed taken from the checkpoint."""
    run(*SPIRO, "--num-epochs", "2", "--cut-off", "1", "--test-freq", "0", "--filename", "g")
    path = workdir / "checkpoint" / "g.pth"
    state = load(path)
    state["rng"]["augment"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state
    state["args"]["device"] = "cuda"
    save_checkpoint(state, path)
    capsys.readouterr()
    weights = []
    for name in ("r1", "r2"):
        weights.append(
            load(run("--resume", "g.pth", "--cut-off", "2", "--filename", name))["encoder"]
        )
        out = capsys.readouterr().out
        assert "saved on cuda and does not carry over to cpu" in out
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], state["encoder"][k]) for k in weights[0])


def test_resume_refuses_a_conflicting_run_flag(workdir):
    run(*SPIRO, "--num-epochs", "1", "--test-freq", "0", "--filename", "a")
    with pytest.raises(train.UsageError, match="--arch resnet34 conflicts"):
        train.main(
            train.get_args_parser().parse_args(
                ["--resume", "checkpoint/a.pth", "--arch", "resnet34"]
            )
        )


def test_resume_refuses_a_run_flag_typed_at_its_default_value(workdir):
    """``--lambda-gp 0`` typed over a run with the penalty is a conflict, although 0 is the
    parser's default: what counts is that it was typed."""
    run(*SPIRO, "--num-epochs", "2", "--cut-off", "1", "--test-freq", "0", "--filename", "a",
        "--lambda-gp", "0.01", "--gp-upper-limit", "1000")  # fmt: skip
    with pytest.raises(train.UsageError, match="--lambda-gp 0.0 conflicts with the resumed run's"):
        run("--resume", "checkpoint/a.pth", "--lambda-gp", "0")
    resumed = load(run("--resume", "checkpoint/a.pth", "--lambda-gp", "0.01", "--cut-off", "2"))
    assert resumed["args"]["lambda_gp"] == 0.01 and len(resumed["results"]) == 2


def test_resume_honours_a_resumable_flag_typed_at_its_default_value(workdir):
    """``--save-freq 100`` (its default) typed over a saved 1 takes effect: no epoch-2 copy."""
    run(*SPIRO, "--num-epochs", "2", "--cut-off", "1", "--test-freq", "0", "--save-freq", "1",
        "--filename", "a")  # fmt: skip
    assert (workdir / "checkpoint" / "a_epoch001.pth").is_file()
    resumed = load(run("--resume", "checkpoint/a.pth", "--save-freq", "100", "--cut-off", "2"))
    assert resumed["args"]["save_freq"] == 100 and len(resumed["results"]) == 2
    assert not (workdir / "checkpoint" / "a_epoch002.pth").exists()


def test_flags_typed_or_read_from_a_preset_count_as_given(tmp_path):
    from utils.cli import given_flags

    preset = tmp_path / "p.args"
    preset.write_text("--lambda-gp 0  # the default, typed\n--save-freq 100\n")
    args = train.get_args_parser().parse_args([f"@{preset}", "--seed", "0"])
    assert given_flags(args) == {"lambda_gp", "save_freq", "seed"}
    assert "given" not in vars(args)  # what checkpoints save of the arguments: the flags alone
    assert given_flags(train.get_args_parser().parse_args([])) == set()


def test_imagenet_trains_with_the_default_probe_frequency(workdir):
    """ImageNet has no full-batch probe, so --test-freq defaults to 0 there (10 elsewhere)."""
    root = write_image_folder(workdir / "inet", {"train": 2, "val": 1}, classes=2, size=[(40, 30)])
    write_paths(workdir, imagenet=root)
    state = load(run("--dataset", "imagenet", "--width", "0.125", "--batch-size", "4",
                     "--num-epochs", "1"))  # fmt: skip
    assert state["args"]["test_freq"] == 0
    assert not any(key.startswith("test_") for key in state["results"][0])
    spirograph = load(run(*SPIRO, "--num-epochs", "1", "--filename", "s"))
    assert spirograph["args"]["test_freq"] == 10
    # Neither has a kNN monitor: ImageNet's labelled set is not in memory, Spirograph's
    # targets are continuous. Each is one line before any file of the run is touched.
    for dataset, said in ((["--dataset", "imagenet"], "no in-memory"), (SPIRO, "continuous")):
        with pytest.raises(train.UsageError, match=said):
            run(*dataset, "--num-epochs", "1", "--knn-freq", "1", "--filename", "k")
    assert not list(workdir.glob("checkpoint/k*"))


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda state: state["args"].pop("width"), "lacks the run flags --width: an older"),
        (lambda state: state.pop("next"), "lacks next, so it cannot be resumed"),
        (  # the position as it was before each step value had its own count
            lambda state: state["next"].update(penalty_steps=0) or state["next"].pop("counts"),
            "lacks a position of this version",
        ),
    ],
)
def test_a_checkpoint_of_an_older_version_is_one_line_saying_what_it_lacks(workdir, change, said):
    """No code reads checkpoints no released version wrote: --resume and the evaluation refuse
    them in one line."""
    run(*SPIRO, "--num-epochs", "1", "--test-freq", "0", "--filename", "a")
    path = workdir / "checkpoint" / "a.pth"
    state = load(path)
    change(state)
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError, match=said):
        run("--resume", "checkpoint/a.pth")
    if "width" not in state["args"]:
        with pytest.raises(CheckpointError, match=r"lacks valid training arguments"):
            load_encoder(path, torch.device("cpu"))


def cli(workdir: Path, *flags: str) -> subprocess.CompletedProcess:
    return run_script("invariance_by_gradient.py", workdir, *flags)


def test_missing_dataset_folder_is_one_clear_line(workdir):
    write_paths(workdir, cifar10=workdir / "nowhere")
    out = cli(workdir, "--dataset", "cifar10", "--device", "cpu")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "cifar10" in line and str(workdir / "nowhere") in line and "dataset-paths.json" in line
    assert not (workdir / "checkpoint").exists()


def test_missing_paths_file_and_wrong_layout(workdir):
    out = cli(workdir, "--dataset", "cifar100", "--device", "cpu")
    assert out.returncode == 2 and "no dataset-paths.json" in out.stderr
    (workdir / "empty").mkdir()
    write_paths(workdir, cifar100=workdir / "empty")
    out = cli(workdir, "--dataset", "cifar100", "--device", "cpu")
    assert (
        out.returncode == 2 and "cifar-100-python" in out.stderr and "Traceback" not in out.stderr
    )


@pytest.mark.parametrize(
    "flags",
    [
        ["--batch-size", "1"],
        ["--base-lr", "-1"],
        ["--proportion", "0"],
        ["--proportion", "1.5"],
        ["--lambda-gp", "-0.1"],
        ["--temperature", "0"],
        ["--width", "0.005"],
        ["--width", "inf"],
        ["--width", "nan"],
        ["--knn-freq", "-1"],
    ],
)
def test_impossible_flag_values_are_argparse_errors(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.get_args_parser().parse_args(flags)
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_gp_every_penalises_every_kth_step_with_k_times_the_weight(workdir, monkeypatch):
    calls = []
    exact = train.gradient_penalty

    def counting(*a, **k):
        calls.append(1)
        return exact(*a, **k)

    monkeypatch.setattr(train, "gradient_penalty", counting)
    # 10 images at batch 4: 2 steps an epoch, so global steps 0 and 2 of 4 are penalised.
    state = load(
        run(*SPIRO, "--num-epochs", "2", "--test-freq", "0", "--lambda-gp", "1e-2",
            "--gp-upper-limit", "1000", "--gp-every", "2", "--log-interval", "1")
    )  # fmt: skip
    assert len(calls) == 2
    for row in state["results"]:
        # One penalised step of two with weight 2λ: on average the loss is c + λ·penalty.
        assert row["penalty"] > 0
        assert row["loss"] == pytest.approx(
            row["contrastive_loss"] + 1e-2 * row["penalty"], rel=1e-5
        )


def natural_views(side: int) -> NaturalViews:
    return NaturalViews("cifar10", side, generator=torch.Generator().manual_seed(2))


def one_step(
    flags: list[str], penalty_weight: float, side: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(contrastive, penalty, loss) and the first convolution's LARS-adapted gradient after one
    training step of a fresh seeded ResNet-18 on fixed ``side``-pixel images, with the given
    training flags."""
    args = train.get_args_parser().parse_args(["--arch", "resnet18", "--batch-size", "8", *flags])
    torch.manual_seed(0)
    encoder, head, optimizer, _ = train.build_model(args, "cifar", torch.device("cpu"))
    images = torch.randint(0, 256, (8, 3, side, side), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    nets = Networks(
        encoder, head, compiled=torch.compile(encoder) if args.compile else None,
        amp_dtype=train.AMP_DTYPES[args.amp], channels_last=args.channels_last,
    )  # fmt: skip
    values = train.training_step(
        nets, natural_views(side), optimizer, images, images,
        temperature=0.5, penalty_weight=penalty_weight, gp_upper_limit=1000.0,
        scaler=torch.amp.GradScaler("cpu") if args.amp == "fp16" else None,
    )  # fmt: skip
    return values, encoder.conv1.weight.grad.contiguous()


def test_the_step_descends_nt_xent_plus_lambda_times_the_spec_penalty(monkeypatch):
    """Spec section 5 as the training step wires it: the penalty is taken on the first view's
    colour parameters θ (the ones that made the view), with K = 100 fresh draws from the same
    jitter distribution, the configured clamp and normalisation; and the gradient handed to
    LARS is that of NT-Xent + λ·penalty, i.e. linear in λ with a non-zero penalty part."""
    from augmentation.colour import jitter_bounds

    calls = []
    real_penalty = train.gradient_penalty

    def spy(representation, params, fresh, signs, **options):
        calls.append((params, fresh, signs, options))
        return real_penalty(representation, params, fresh, signs, **options)

    monkeypatch.setattr(train, "gradient_penalty", spy)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip

    def raw_gradients(penalty_weight: float) -> tuple[list[float], list[torch.Tensor]]:
        args = train.get_args_parser().parse_args(["--arch", "resnet18", "--batch-size", "6"])
        torch.manual_seed(0)
        encoder, head, optimizer, _ = train.build_model(args, "cifar", torch.device("cpu"))
        params = [*encoder.parameters(), *head.parameters()]
        seen = []
        # LARS rescales .grad in place: keep the gradient as backward left it.
        monkeypatch.setattr(
            optimizer, "step", lambda: seen.extend(p.grad.double().clone() for p in params)
        )
        values = train.training_step(
            Networks(encoder, head), natural_views(32), optimizer, images, images,
            temperature=0.5, penalty_weight=penalty_weight, gp_upper_limit=1000.0,
        )  # fmt: skip
        return values.tolist(), seen

    (v0, g0), (v1, g1), (v2, g2) = (raw_gradients(w) for w in (0.0, 0.5, 1.0))
    assert len(calls) == 2  # λ = 0 computes no penalty
    theta, draws, signs, options = calls[0]
    assert theta.shape == (6, 4) and theta.requires_grad
    assert draws.shape == (100, 6, 4) and options["upper_limit"] == 1000.0  # K = 100 per image
    assert options["normalize"] is True
    assert signs.shape == (6, 512) and set(signs.unique().tolist()) == {-1.0, 1.0}
    bounds = torch.tensor(jitter_bounds(0.5))
    assert torch.all(draws >= bounds[:, 0]) and torch.all(draws <= bounds[:, 1])
    assert torch.all(theta >= bounds[:, 0]) and torch.all(theta <= bounds[:, 1])
    # Same views, so the same NT-Xent; the same penalty draws at λ = 0.5 and 1.
    assert v0[0] == v1[0] == v2[0] and v1[1] == v2[1] > 0
    assert v2[2] == pytest.approx(v2[0] + v2[1], rel=1e-6)
    # λ·(penalty gradient), twice: equal up to float32 summation order (1e-3 of its size).
    first = torch.cat([(b - a).flatten() for a, b in zip(g0, g1, strict=True)])
    second = torch.cat([(c - b).flatten() for b, c in zip(g1, g2, strict=True)])
    assert first.norm() > 1e-3 * torch.cat([a.flatten() for a in g0]).norm()
    assert (second - first).norm() < 1e-3 * first.norm()


@pytest.mark.parametrize("penalty_weight", [0.0, 0.1])
def test_channels_last_step_matches_the_default_layout(penalty_weight):
    (v0, g0), (v1, g1) = one_step([], penalty_weight), one_step(["--channels-last"], penalty_weight)
    # Only float32 summation order differs; the penalty (a derivative of a normalised output
    # with respect to colour parameters) amplifies it: 3e-4 relative on the VM this was written
    # on, 1.01e-3 on a later one (an AVX-512 Xeon, other kernels), hence 3e-3.
    torch.testing.assert_close(v0, v1, rtol=3e-3, atol=1e-5)
    torch.testing.assert_close(g0, g1, rtol=3e-3, atol=1e-5)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_keeps_the_penalty_exact_and_lowers_the_rest(amp):
    """The penalised view stays float32 under --amp, so the penalty is bit-identical to the
    float32 step's; NT-Xent runs in low precision, so it moves, but only by rounding."""
    # 16-pixel images: float16 convolutions are slow on a CPU.
    (v0, _), (v1, g1) = one_step([], 0.1, side=16), one_step(["--amp", amp], 0.1, side=16)
    assert v1[1] == v0[1]
    assert v1[0] != v0[0]  # autocast did run
    torch.testing.assert_close(v1[0], v0[0], rtol=1e-2, atol=0)
    if amp == "bf16":
        assert torch.isfinite(g1).all()
    # fp16's first step starts at GradScaler's scale 2**16 and may overflow and be skipped,
    # depending on the CPU's kernels (it does on the AVX-512 VM): the next test covers that.


def test_fp16_loss_scaling_skips_an_overflowing_step():
    args = train.get_args_parser().parse_args(["--arch", "resnet18", "--batch-size", "4"])
    torch.manual_seed(0)
    encoder, head, optimizer, _ = train.build_model(args, "cifar", torch.device("cpu"))
    before = [p.detach().clone() for p in encoder.parameters()]
    # A scale this large makes the scaled float16 gradients overflow: the step must be skipped
    # and the scale halved, as torch.amp's loss scaling does.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)  # float16 is slow on a CPU
    train.training_step(
        Networks(encoder, head, amp_dtype=torch.float16), natural_views(16), optimizer,
        images, images, temperature=0.5, penalty_weight=0.0, gp_upper_limit=1.0, scaler=scaler,
    )  # fmt: skip
    assert scaler.get_scale() == 2.0**99
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))


def test_fp16_run_saves_and_resumes_its_loss_scale(workdir):
    # 5 images at batch 4: one step an epoch (float16 is slow on a CPU), and only one step in all.
    path = run("--dataset", "spirograph", "--proportion", "0.00005", "--batch-size", "4",
               "--num-epochs", "2", "--cut-off", "1", "--test-freq", "0",
               "--amp", "fp16")  # fmt: skip
    first = load(path)
    assert first["scaler"]["scale"] > 0 and first["args"]["amp"] == "fp16"
    # A scale no fresh scaler starts at: the resumed run must carry it, not start over. Resumed
    # under another name with nothing left to run, it loads the state and writes it back.
    first["scaler"]["scale"] = 1234.0
    save_checkpoint(first, path)
    final = load(run("--resume", "output.pth", "--filename", "again"))
    assert final["scaler"]["scale"] == 1234.0 and final["args"]["amp"] == "fp16"


class RecordingCompile:
    """Stands in for torch.compile: returns a module that records each batch it encodes."""

    def __init__(self):
        self.batches = []

    def __call__(self, module):
        recorder = self

        class Compiled(torch.nn.Module):
            def forward(self, x):
                recorder.batches.append(x.shape[0])
                return module(x)

        return Compiled()


def test_compile_encodes_only_the_views_without_the_penalty(workdir, monkeypatch):
    recording = RecordingCompile()
    monkeypatch.setattr(train.torch, "compile", recording)
    # 2 steps: step 0 is penalised (view 1 eager, view 2 compiled), step 1 is not (both compiled).
    state = load(
        run(*SPIRO, "--num-epochs", "1", "--test-freq", "0", "--lambda-gp", "1e-2",
            "--gp-upper-limit", "1000", "--gp-every", "2", "--compile")
    )  # fmt: skip
    assert recording.batches == [4, 4, 4]
    assert not any(k.startswith("_orig_mod.") for k in state["encoder"])


@pytest.mark.slow
@pytest.mark.parametrize("penalty_weight", [0.0, 0.1])
def test_compiled_step_matches_eager(penalty_weight):
    """A real torch.compile (inductor; a minute or more on 2 CPU cores) gives the eager step's
    losses and gradients, the penalty's double backward included."""
    (v0, g0) = one_step([], penalty_weight)
    (v1, g1) = one_step(["--compile"], penalty_weight)
    torch.testing.assert_close(v0, v1, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(g0, g1, rtol=1e-3, atol=1e-5)


def test_build_model_uses_the_spec_optimiser():
    """Spec section 6: SGD (momentum 0.9, weight decay 1e-6) at base × batch / 256 inside LARS
    (trust 1e-3); a constant rate without --cosine-anneal."""
    from datasets.sources import load_dataset

    args = train.get_args_parser().parse_args(
        ["--dataset", "spirograph", "--arch", "resnet18", "--batch-size", "64", "--base-lr", "2"]
    )
    data = load_dataset("spirograph", proportion=0.001)
    encoder, head, optimizer, scheduler = train.build_model(
        args, data.info.stem, torch.device("cpu")
    )
    assert scheduler is None
    (group,) = optimizer.optim.param_groups
    assert group["lr"] == 2 * 64 / 256 and group["momentum"] == 0.9
    assert group["weight_decay"] == 1e-6 and optimizer.trust_coef == 1e-3
    owned = {id(p) for p in [*encoder.parameters(), *head.parameters()]}
    assert {id(p) for p in group["params"]} == owned


def test_the_resumable_group_holds_exactly_the_flags_a_resume_may_change():
    """`merge_resumed_args` lets these differ from the checkpoint's values; every other flag
    defines the run (the set the hand-kept RESUME_OVERRIDABLE list held before it became an
    argparse group)."""
    assert utils.resume.resumable_flags(train.get_args_parser()) == {
        "resume", "num_workers", "device", "test_freq", "knn_freq", "save_freq", "cut_off",
        "checkpoint_dir", "filename", "git", "log_interval", "channels_last", "compile", "amp",
        "save_every_steps", "overwrite", "tensorboard", "preview",
    }  # fmt: skip
