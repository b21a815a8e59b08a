"""The study driver (benchmarks/study.py): its jobs, their order, and records that make a
rerun skip what is done."""

import json

import pytest

from benchmarks import study
from utils.cli import UsageError


def test_the_plan_pairs_methods_by_seed_and_evaluates_every_kept_checkpoint(tmp_path):
    jobs = study.plan(["spirograph", "cifar10"], [0, 3], tmp_path / "out", tmp_path / "rec")
    names = [job.name for job in jobs]
    assert len(names) == len(set(names))
    # Spirograph, seed 0: three trainings, each followed by its four checkpoints' evaluations.
    assert names[:5] == ["spirograph-simclr-seed0"] + [
        f"spirograph-simclr-seed0-epoch{e:03d}" for e in (5, 10, 15, 20)
    ]
    assert names[10:15] == ["spirograph-gp4-seed0"] + [
        f"spirograph-gp4-seed0-epoch{e:03d}" for e in (5, 10, 15, 20)
    ]
    assert names[15] == "spirograph-random-seed0"
    by_name = {job.name: job for job in jobs}
    # The whole suite on seed 0's final SimCLR and InvCLR checkpoints and its random encoder,
    # not on the cheap penalty's, an intermediate checkpoint's, or seed 3's.
    suite = sorted(name for name, job in by_name.items() if "--suite" in job.command)
    assert suite == [
        "cifar10-invclr-seed0-epoch010", "cifar10-random-seed0", "cifar10-simclr-seed0-epoch010",
        "spirograph-invclr-seed0-epoch020", "spirograph-random-seed0",
        "spirograph-simclr-seed0-epoch020",
    ]  # fmt: skip
    others = [job for job in jobs if job.kind == "evaluate" and "--suite" not in job.command]
    assert all("--conditional-variance" in j.command and "--authors-variance" in j.command
               for j in others)  # fmt: skip
    # The sweep: three more weights on Spirograph, seed 0 only (1e-2 is InvCLR's run).
    sweep = [n for n in names if "lambda" in n and n.endswith("seed0")]
    assert sweep == ["spirograph-lambda1e-4-seed0", "spirograph-lambda1e-3-seed0",
                     "spirograph-lambda1e-1-seed0"]  # fmt: skip
    assert not [n for n in names if n.startswith("cifar10-lambda")]
    # InvCLR without its upper limit: every seed, after the sweep and each half's other jobs,
    # with each checkpoint evaluated.
    free = [n for n in names if "spirograph-nolimit" in n]
    assert free == [f"spirograph-nolimit-seed{s}{e}" for s in (0, 3)
                    for e in ("", "-epoch005", "-epoch010", "-epoch015", "-epoch020")]  # fmt: skip
    assert names.index(free[0]) > names.index("spirograph-lambda1e-1-seed0-epoch020")
    assert names.index(free[-1]) < names.index("cifar10-simclr-seed0")
    free3 = " ".join(by_name["spirograph-nolimit-seed3"].command)
    assert "--lambda-gp 1e-2 --gp-upper-limit 1e9 --seed 3" in free3
    assert names[-6:] == [
        f"cifar10-nolimit-seed{s}{e}" for s in (0, 3) for e in ("", "-epoch005", "-epoch010")
    ]
    assert "--lambda-gp 0.1 --gp-upper-limit 1e9 --seed 0" in " ".join(
        by_name["cifar10-nolimit-seed0"].command
    )
    train = by_name["spirograph-gp4-seed3"].command
    assert " ".join(train).endswith(
        "--lambda-gp 1e-2 --gp-upper-limit 1000 --gp-every 4 --seed 3 --device cpu "
        f"--checkpoint-dir {tmp_path / 'out'} --filename spirograph-gp4-seed3 --resume auto"
    )
    random = by_name["cifar10-random-seed3"]
    assert random.command[-1] == "--random-init" and "--seed" in random.command
    assert random.needs == [tmp_path / "out" / "cifar10-simclr-seed3_epoch010.pth"]


def test_a_tiny_study_writes_each_record_once(tmp_path, monkeypatch):
    tiny = {
        "spirograph": {
            **study.PROTOCOL["spirograph"],
            "train": [
                "--dataset", "spirograph", "--arch", "resnet18", "--width", "0.125",
                "--proportion", "0.0002", "--batch-size", "8", "--num-epochs", "5",
                "--save-freq", "5", "--test-freq", "0", "--num-workers", "0",
            ],
            "methods": {"simclr": ["--lambda-gp", "0"]},
            "sweep": {},
            "ablations": {},
        }
    }  # fmt: skip
    monkeypatch.setattr(study, "PROTOCOL", tiny)
    monkeypatch.setattr(study, "PROBE", ["--reg-weight", "1e-3"])
    monkeypatch.setattr(study, "VARIANCE", ["--conditional-variance", "2"])
    monkeypatch.setattr(study, "SUITE_SEEDS", ())
    argv = ["--datasets", "spirograph", "--seeds", "1", "--out", str(tmp_path / "out")]
    argv += ["--record", str(tmp_path / "rec")]
    ran = study.main(study.get_args_parser().parse_args(argv))
    assert [job.name for job in ran] == [
        "spirograph-simclr-seed1", "spirograph-simclr-seed1-epoch005", "spirograph-random-seed1"
    ]  # fmt: skip
    folder = tmp_path / "rec" / "spirograph"
    train = json.loads((folder / "spirograph-simclr-seed1.train.json").read_text())
    assert [row["epoch"] for row in train["epochs"]] == [1, 2, 3, 4, 5]
    assert train["command"].startswith("python3 invariance_by_gradient.py --dataset spirograph")
    assert train["train_time_s"] > 0 and "load_before" in train and "cpu" in train["machine"]
    trained = json.loads((folder / "spirograph-simclr-seed1-epoch005.json").read_text())
    random = json.loads((folder / "spirograph-random-seed1.json").read_text())
    assert not trained["result"]["random_init"] and random["result"]["random_init"]
    assert trained["result"]["conditional_variance"]["theta"]["conditional_variance"] > 0
    assert "mse_m" in trained["result"]  # --componentwise: each target's MSE
    assert study.main(study.get_args_parser().parse_args(argv)) == []  # all done: nothing runs
    # A record of another command (an earlier protocol's) is redone, and only that one.
    random["command"] = random["command"].replace(" --random-init", " --num-passes 2 --random-init")
    (folder / "spirograph-random-seed1.json").write_text(json.dumps(random))
    ran = study.main(study.get_args_parser().parse_args(argv))
    assert [job.name for job in ran] == ["spirograph-random-seed1"]
    # A training redone (another record) makes the evaluations of its checkpoints stale.
    train["date"] = "2099-01-01 00:00"
    (folder / "spirograph-simclr-seed1.train.json").write_text(json.dumps(train))
    todo = study.main(study.get_args_parser().parse_args([*argv, "--plan"]))
    assert [job.name for job in todo] == [
        "spirograph-simclr-seed1-epoch005", "spirograph-random-seed1"
    ]  # fmt: skip


def test_checkpoints_outside_the_repository_are_refused_for_its_records(tmp_path):
    argv = ["--out", str(tmp_path), "--plan"]
    with pytest.raises(UsageError, match="outside the repository, where --record is"):
        study.main(study.get_args_parser().parse_args(argv))
