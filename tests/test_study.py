"""The study's plan, runner and records (study/plan.py, runner.py, records.py): its jobs, their
order, records that make a rerun skip what is done, damaged records named, and a checkpoint that
is gone retrained from its record."""

import dataclasses
import json
import shutil
from types import SimpleNamespace

import pytest
from inprocess import run_logged

import study.plan
import study.runner
from study.__main__ import get_args_parser, main
from study.plan import Job, plan
from study.protocol import PROTOCOLS
from study.records import KIND, RecordError, in_words
from utils.checkpoint import CheckpointError
from utils.cli import UsageError


def test_the_plan_pairs_methods_by_seed_and_evaluates_every_kept_checkpoint(tmp_path):
    jobs = plan(["spirograph", "cifar10"], [0, 3], tmp_path / "out", tmp_path / "rec")
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
    assert random.checkpoint == tmp_path / "out" / "cifar10-simclr-seed3_epoch010.pth"


REAL_RUN = study.runner.run


@pytest.fixture(autouse=True)
def in_process(monkeypatch):
    """The runner's commands run in this process (tests/inprocess.py): the same scripts and
    records, without a new process's import for each job."""
    monkeypatch.setattr(study.runner, "run", run_logged)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One SimCLR run of 5 epochs on 10 Spirograph images, seed 1, run by the study: its
    training, its checkpoint's evaluation and the random encoder's. Built once; `tiny` hands
    each test a fresh copy at the same path (the records' commands name it)."""
    with pytest.MonkeyPatch.context() as patch:
        small = dataclasses.replace(
            PROTOCOLS["spirograph"], proportion="0.0002", epochs=5, width="0.125", batch_size=8,
            methods=PROTOCOLS["spirograph"].methods[:1],
        )  # fmt: skip
        patch.setitem(PROTOCOLS, "spirograph", small)
        patch.setattr(study.runner, "run", run_logged)
        patch.setattr(study.plan, "PROBE", ("--reg-weight", "1e-3"))
        patch.setattr(study.plan, "VARIANCE", ("--conditional-variance", "2", "--authors-variance"))
        patch.setattr(study.plan, "SUITE_SEEDS", ())
        patch.setattr(study.plan, "load", lambda *args: {})  # the first study's jobs alone
        root = tmp_path_factory.mktemp("tiny")
        argv = ["--datasets", "spirograph", "--seeds", "1", "--out", str(root / "out")]
        argv += ["--record", str(root / "rec")]
        ran = study_main("run", argv)
        shutil.copytree(root, root.with_name("pristine"))
        yield argv, root, [job.name for job in ran]


@pytest.fixture
def tiny(built):
    argv, root, ran = built
    shutil.rmtree(root)
    shutil.copytree(root.with_name("pristine"), root)
    return argv, root / "rec" / "spirograph", root / "out", ran


def study_main(command, argv):
    return main(get_args_parser().parse_args([command, *argv]))


def test_a_tiny_study_writes_each_record_once(tiny):
    argv, folder, _, ran = tiny
    assert ran == [
        "spirograph-simclr-seed1", "spirograph-simclr-seed1-epoch005", "spirograph-random-seed1"
    ]  # fmt: skip
    train = json.loads((folder / "spirograph-simclr-seed1.train.json").read_text())
    assert [row["epoch"] for row in train["epochs"]] == [1, 2, 3, 4, 5]
    assert train["command"].startswith("python3 invariance_by_gradient.py --dataset spirograph")
    assert train["train_time_s"] > 0 and "load_before" in train and "cpu" in train["machine"]
    trained = json.loads((folder / "spirograph-simclr-seed1-epoch005.json").read_text())
    random = json.loads((folder / "spirograph-random-seed1.json").read_text())
    assert not trained["result"]["random_init"] and random["result"]["random_init"]
    assert trained["result"]["conditional_variance"]["theta"]["conditional_variance"] > 0
    assert "mse_m" in trained["result"]  # --componentwise: each target's MSE
    assert study_main("run", argv) == []  # all done: nothing runs
    # A record of another command (an earlier protocol's) is redone, and only that one.
    random["command"] = random["command"].replace(" --random-init", " --num-passes 2 --random-init")
    (folder / "spirograph-random-seed1.json").write_text(json.dumps(random))
    assert [job.name for job in study_main("run", argv)] == ["spirograph-random-seed1"]
    # A training redone (another record) makes the evaluations of its checkpoints stale.
    train["date"] = "2099-01-01 00:00"
    (folder / "spirograph-simclr-seed1.train.json").write_text(json.dumps(train))
    assert [job.name for job in study_main("plan", argv)] == [
        "spirograph-simclr-seed1-epoch005", "spirograph-random-seed1"
    ]  # fmt: skip


def test_a_checkpoint_that_is_gone_is_retrained_and_kept_only_where_it_is_the_same_run(
    tiny, capsys
):
    argv, folder, out, _ = tiny
    records = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    # The checkpoint an evaluation to be redone reads is gone (the run's latest state is not,
    # and resuming it would make nothing): the run is retrained. This machine sums as it did,
    # so every epoch equals the record and every other record stays.
    (out / "spirograph-simclr-seed1_epoch005.pth").unlink()
    (folder / "spirograph-simclr-seed1-epoch005.json").unlink()
    capsys.readouterr()
    ran = study_main("run", argv)
    said = capsys.readouterr().out
    assert [job.name for job in ran] == ["spirograph-simclr-seed1-epoch005"]
    assert "spirograph-simclr-seed1: retrained from its record" in said
    assert "all 5 epochs equal the record's bit for bit: the record and its evaluations' " in said
    assert "a new run" not in said
    for name, content in records.items():
        if name != "spirograph-simclr-seed1-epoch005.json":
            assert (folder / name).read_bytes() == content, name
    # The retrained checkpoint is the recorded run's: its evaluation gives the same numbers.
    evaluation = "spirograph-simclr-seed1-epoch005.json"
    redone = json.loads((folder / evaluation).read_text())
    assert redone["result"]["mse"] == json.loads(records[evaluation])["result"]["mse"]
    # A record made where floats are summed in another order: the retrained run is a new one,
    # recorded as such, and every evaluation of it is redone.
    path = folder / "spirograph-simclr-seed1.train.json"
    other = json.loads(path.read_text())
    other["epochs"][2]["loss"] += 1e-9
    other["machine"] = {"cpu": "another CPU", "avx512": True}
    path.write_text(json.dumps(other))
    for checkpoint in out.glob("*.pth"):
        checkpoint.unlink()
    (folder / evaluation).unlink()
    capsys.readouterr()
    # On this machine the run would be another run: its jobs wait for the recorded kind.
    assert study_main("run", argv) == []
    said = capsys.readouterr().out
    assert "deferred: spirograph-simclr-seed1-epoch005: its checkpoint is gone and " in said
    assert "(recorded on another CPU with AVX-512) would be retrained on " in said
    assert (folder / "spirograph-simclr-seed1.train.json").read_text() == json.dumps(other)
    ran = study_main("run", [*argv, "--retrain-anywhere"])
    said = capsys.readouterr().out
    assert [job.name for job in ran] == [
        "spirograph-simclr-seed1-epoch005", "spirograph-random-seed1"
    ]  # fmt: skip
    assert "epoch 3's loss is " in said and "(recorded on another CPU with AVX-512" in said
    assert "a new run, recorded as such; its evaluations are redone" in said
    new = json.loads(path.read_text())
    first = json.loads(records["spirograph-simclr-seed1.train.json"])
    assert new["epochs"][2]["loss"] == first["epochs"][2]["loss"] and new["date"] != other["date"]
    assert new["machine"]["cpu"] != "another CPU"
    for name in ("spirograph-simclr-seed1-epoch005.json", "spirograph-random-seed1.json"):
        assert json.loads((folder / name).read_text())["trained"] == new["date"]
    assert not list(out.glob(".retrain-*"))  # the scratch folder is gone


def test_a_run_is_retrained_here_only_where_every_part_of_the_machine_s_kind_is_the_same(
    tmp_path, monkeypatch
):
    kind = {"cpu": "AMD EPYC", "avx512": True, "amx": False, "cores": 2, "torch": "2.14.1"}
    monkeypatch.setattr(study.runner, "here", lambda: tuple(kind[k] for k in KIND))
    recorded = {}
    training = SimpleNamespace(done=True, read=lambda: {"machine": recorded})
    job = Job("e", "spirograph", "simclr", 0, tmp_path / "e.json", [], (), 20,
              tmp_path / "gone.pth", training)  # fmt: skip
    recorded |= kind | {"python": "3.12"}  # what does not order the sums does not count
    assert study.runner.elsewhere(job) is None
    for key, other in (("cpu", "Intel Xeon"), ("avx512", False), ("amx", True), ("cores", 4),
                       ("torch", "2.15.0")):  # fmt: skip
        recorded |= kind | {key: other}
        assert study.runner.elsewhere(job) == in_words(recorded), key
    assert in_words(recorded) == "AMD EPYC with AVX-512, 2 threads, torch 2.15.0"
    (tmp_path / "gone.pth").write_bytes(b"")  # the checkpoint is there: nothing to retrain
    assert study.runner.elsewhere(job) is None


def test_a_damaged_record_is_named_and_stops_every_command_before_it_writes(tiny):
    argv, folder, _, _ = tiny
    path = folder / "spirograph-simclr-seed1-epoch005.json"
    whole = path.read_bytes()
    # A job to run first, and after it a record cut short (a crash mid-copy, a bad merge):
    # nothing runs, not even the job before the damaged record.
    path.unlink()
    random = folder / "spirograph-random-seed1.json"
    random.write_bytes(random.read_bytes()[:200])
    before = {p: p.read_bytes() for p in folder.glob("*.json")}
    for command in ("plan", "run"):
        with pytest.raises(RecordError, match="spirograph-random-seed1.json is not JSON"):
            study_main(command, argv)
    assert not path.exists() and {p: p.read_bytes() for p in folder.glob("*.json")} == before
    random.unlink()
    # A record that parses but lacks a field the study reads.
    content = json.loads(whole)
    del content["result"]["converged"]
    path.write_text(json.dumps(content))
    with pytest.raises(RecordError, match="epoch005.json lacks result.converged: a damaged record"):
        study_main("run", argv)
    train = folder / "spirograph-simclr-seed1.train.json"
    content = json.loads(train.read_text())
    del content["epochs"][1]["loss"]
    train.write_text(json.dumps(content))
    with pytest.raises(
        RecordError, match=r"seed1.train.json lacks epochs\[\].loss \(a number\): a damaged"
    ):
        study_main("plan", argv)
    # A value of the wrong type: a command that is no text would count as another command's.
    content = json.loads(train.read_text())
    content["epochs"][1]["loss"], content["command"] = 1.0, 5
    train.write_text(json.dumps(content))
    with pytest.raises(
        RecordError, match=r"seed1.train.json lacks command \(text\): a damaged record"
    ):
        study_main("run", argv)
    train.write_text("[1, 2]")
    with pytest.raises(RecordError, match="seed1.train.json is not a JSON object: a damaged"):
        study_main("plan", argv)


def test_a_folder_that_cannot_be_written_is_one_line_before_any_job(tiny):
    argv, folder, out, _ = tiny
    (folder / "spirograph-random-seed1.json").unlink()  # a job to run
    blocked = out.parent / "blocked"
    blocked.write_text("a file where --out wants a folder")
    at = argv.index("--out") + 1
    with pytest.raises(CheckpointError, match="blocked .*; choose a writable --out"):
        study_main("run", [*argv[:at], str(blocked), *argv[at + 1 :]])
    assert not (folder / "spirograph-random-seed1.json").exists()


def test_checkpoints_outside_the_repository_are_refused_for_its_records(tmp_path):
    with pytest.raises(UsageError, match="outside the repository, where --record is"):
        study_main("plan", ["--out", str(tmp_path)])


def test_the_runner_runs_a_command_in_a_process_of_its_own_and_names_its_log(tmp_path):
    """`study.runner.run` itself (the other tests run the commands in this process): output
    into the log, a failure one line naming the log."""
    log = tmp_path / "job.log"
    assert REAL_RUN(["-c", "print('trained')"], log) > 0
    assert log.read_text() == "trained\n"
    with pytest.raises(UsageError, match=r"failed \(exit 3\); see .*job.log"):
        REAL_RUN(["-c", "import sys; print('bad'); sys.exit(3)"], log)
    assert log.read_text() == "bad\n"
