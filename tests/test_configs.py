"""The presets in configs/: argument files (`@FILE`) for the training script, each promising
the settings of one run (SPEC section 8, and study/protocol.py for the laptop ones)."""

import re
import shlex
from pathlib import Path

import pytest

import invariance_by_gradient
import lbfgs_linear_clf
import lbfgs_linear_clf_spirograph
from study.protocol import PROTOCOLS
from utils.cli import run_cli

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"

# fmt: off
PAPER_CIFAR = {"arch": "resnet50", "width": 1.0, "batch_size": 512, "base_lr": 1.5,
               "temperature": 0.5, "num_epochs": 1000, "cosine_anneal": True}
PAPER_SPIROGRAPH = {"dataset": "spirograph", "arch": "resnet18", "width": 1.0, "batch_size": 512,
                    "base_lr": 1.5, "temperature": 0.5, "num_epochs": 50, "cosine_anneal": True}
LAPTOP = {"arch": "resnet18", "width": 0.25, "batch_size": 64, "base_lr": 1.5, "num_epochs": 10,
          "cosine_anneal": False, "test_freq": 0, "save_freq": 5}
# What each file promises; a default it leaves implicit is checked as well.
EXPECTED = {
    "cifar10_simclr": {**PAPER_CIFAR, "dataset": "cifar10", "lambda_gp": 0.0},
    "cifar10_invclr": {**PAPER_CIFAR, "dataset": "cifar10", "lambda_gp": 0.1, "gp_upper_limit": 1},
    "cifar100_simclr": {**PAPER_CIFAR, "dataset": "cifar100", "lambda_gp": 0.0},
    "cifar100_invclr": {**PAPER_CIFAR, "dataset": "cifar100", "lambda_gp": 0.1,
                        "gp_upper_limit": 1},
    "spirograph_simclr": {**PAPER_SPIROGRAPH, "lambda_gp": 0.0},
    "spirograph_invclr": {**PAPER_SPIROGRAPH, "lambda_gp": 1e-2, "gp_upper_limit": 1000},
    "cifar10_laptop": {**LAPTOP, "dataset": "cifar10", "proportion": 0.2, "lambda_gp": 0.1,
                       "gp_upper_limit": 1},
    "spirograph_laptop": {**LAPTOP, "dataset": "spirograph", "proportion": 0.05,
                          "lambda_gp": 1e-2, "gp_upper_limit": 1000, "num_epochs": 20},
}
# fmt: on


def parse(*argv: str):
    return invariance_by_gradient.get_args_parser().parse_args(list(argv))


def test_every_preset_is_expected():
    assert sorted(p.stem for p in CONFIGS.glob("*.args")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_parses_to_its_run(name):
    path = CONFIGS / f"{name}.args"
    args = parse("@" + str(path))
    promised = {"seed": 0, "gp_every": 1, "proportion": 1.0, **EXPECTED[name]}
    assert {key: getattr(args, key) for key in promised} == promised
    assert args.filename != "output"  # each run is saved under its own name
    # The file says what it is and how to use it before any flag, then holds one flag a line.
    text = path.read_text()
    header = text.split("\n--", 1)[0]
    assert header.startswith("# ")
    assert f"python3 invariance_by_gradient.py @configs/{path.name}" in header
    assert f"--load-from {args.filename}.pth" in header  # the evaluation names what it saves
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        assert not words or (words[0].startswith("--") and len(words) <= 2), line


@pytest.mark.parametrize("dataset", sorted(PROTOCOLS))
def test_laptop_preset_is_the_results_protocol(dataset):
    spec = PROTOCOLS[dataset]
    protocol = parse(*spec.train_flags, *spec.method("invclr").flags)
    preset = parse(f"@{CONFIGS / f'{dataset}_laptop.args'}", "--filename", protocol.filename)
    assert vars(preset) == vars(protocol)


def test_later_flags_override_the_file():
    path = "@" + str(CONFIGS / "spirograph_invclr.args")
    args = parse(path, "--lambda-gp", "0", "--num-epochs", "3", "--filename", "mine")
    assert (args.lambda_gp, args.num_epochs, args.filename) == (0.0, 3, "mine")
    assert args.gp_upper_limit == 1000  # what is not overridden stays the file's
    # Arguments are read in order: a flag before the file is the file's to override.
    assert parse("--num-epochs", "3", path).num_epochs == 50


def test_comments_blank_lines_and_quotes(tmp_path):
    preset = tmp_path / "mine.args"
    preset.write_text(
        "# a comment line\n\n--dataset spirograph   # a trailing comment\n"
        "   \n--lambda-gp 0.5\n--filename 'run one'\n--cosine-anneal\n"
    )
    args = parse(f"@{preset}")
    assert (args.dataset, args.lambda_gp, args.filename) == ("spirograph", 0.5, "run one")
    assert args.cosine_anneal


@pytest.mark.parametrize("script", [lbfgs_linear_clf, lbfgs_linear_clf_spirograph])
def test_evaluation_scripts_accept_argument_files(script, tmp_path):
    preset = tmp_path / "eval.args"
    preset.write_text(
        "# evaluation\n--load-from run.pth\n--num-passes 30  # M\n--reg-weight 1e-8\n"
    )
    args = script.get_args_parser().parse_args([f"@{preset}", "--num-passes", "2"])
    assert (args.load_from, args.num_passes, args.reg_weight) == ("run.pth", 2, 1e-8)


def script_error(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr("sys.argv", ["invariance_by_gradient.py", *argv])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(invariance_by_gradient.main, invariance_by_gradient.get_args_parser())
    return exit_info.value.code, capsys.readouterr().err


def test_a_missing_or_broken_file_is_one_line(monkeypatch, capsys, tmp_path):
    code, err = script_error(monkeypatch, capsys, f"@{tmp_path / 'nope.args'}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope.args" in err
    broken = tmp_path / "broken.args"
    broken.write_text("--filename 'unclosed\n")
    code, err = script_error(monkeypatch, capsys, f"@{broken}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unclosed" in err


def test_readme_names_presets_that_exist():
    named = re.findall(r"@configs/(\S+?\.args)", (REPO / "README.md").read_text())
    assert named and all((CONFIGS / name).is_file() for name in named)
