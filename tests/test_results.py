"""The results driver: records written per run and skipped once written, a table built from the
records alone, paired differences and their verdicts."""

import json

import pytest

from benchmarks import results

TINY = {
    "spirograph": {
        **results.PROTOCOL["spirograph"],
        "train": [
            "--dataset", "spirograph", "--arch", "resnet18", "--width", "0.125",
            "--proportion", "0.0002", "--batch-size", "8", "--base-lr", "1.5",
            "--num-epochs", "1", "--test-freq", "0",
        ],
        "evaluate": ["--reg-weight", "auto", "--invariance", "3", "--num-workers", "0"],
    }
}  # fmt: skip


def test_each_run_writes_a_record_and_a_second_call_reruns_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "PROTOCOL", TINY)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.START}\nold\n{results.END}\nrest\n")
    argv = ["--seeds", "0", "--out", str(tmp_path / "out"), "--record", str(tmp_path / "rec")]
    argv += ["--docs", str(tmp_path / "docs"), "--readme", str(readme)]
    results.main(results.get_args_parser().parse_args(argv))
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "rec").glob("*.json")}
    assert set(records) == {f"spirograph-{m}-seed0" for m in ("simclr", "invclr", "random")}
    invclr = records["spirograph-invclr-seed0"]
    assert invclr["train_command"].startswith("python3 invariance_by_gradient.py --dataset")
    assert "--lambda-gp 1e-2 --gp-upper-limit 1000" in invclr["train_command"]
    assert "--seed 0" in invclr["eval_command"] and invclr["converged"]
    assert invclr["epochs"][0]["clamp_fraction"] == 0.0 and invclr["train_time_s"] > 0
    assert "cpu" in invclr["machine"] and "checkpoint" not in invclr
    assert records["spirograph-random-seed0"]["random_init"]
    assert (tmp_path / "docs" / "curves-spirograph.png").is_file()
    assert (tmp_path / "docs" / "spirograph.preview.png").is_file()
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "| InvCLR (λ = 1e-2, limit 1000) |" in text

    # Done runs are skipped: a second call trains nothing.
    (tmp_path / "out" / "spirograph-simclr-seed0.pth").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "rec").iterdir()}
    results.main(results.get_args_parser().parse_args(argv))
    assert not (tmp_path / "out" / "spirograph-simclr-seed0.pth").exists()
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "rec").iterdir()}


def record(mse: float, invariance: float, **extra) -> dict:
    return {
        "mse": mse, "invariance": invariance, "invariance_within": invariance / 10,
        "invariance_across": 0.1, "invariance_draws": 10, "invariance_images": 100,
        "n_train": 5000, "n_test": 1000, "untransformed": False, "views": "augmented",
        "num_passes": 1,
        "reg_weight": 1e-4, "converged": True, "train_time_s": 60.0,
        "epochs": [{"clamp_fraction": 0.25}, {"clamp_fraction": 0.75}], **extra,
    }  # fmt: skip


def test_table_pairs_seeds_and_says_what_the_difference_shows():
    # InvCLR's MSE lower on every seed by about 0.009: a clear paired difference.
    invclr = {s: record(0.02 + s * 2e-3, 0.20 + (s - 1) * 0.05) for s in range(3)}
    groups = {
        ("spirograph", "simclr"): {s: record(0.03 + s * 1e-3, 0.20) for s in range(3)},
        ("spirograph", "invclr"): invclr,
        ("spirograph", "random"): {s: record(0.08, 0.9, epochs=[]) for s in range(3)},
    }  # fmt: skip
    text = results.table(groups)
    assert "| SimCLR (λ = 0) | 0.0310 ± 0.0010 | 0.0300, 0.0310, 0.0320 |" in text
    assert "| 50% |" in text  # the mean of the epochs' clamp fractions
    assert "| random-initialisation encoder | 0.0800 ± 0.0000 |" in text
    assert "MSE (paired by seed, 3 seeds): -0.009 ± 0.00058 (standard error): supports" in text
    assert (
        "invariance ratio (this project's measure) (paired by seed, 3 seeds): +0 ± 0.029 "
        "(standard error): too noisy" in text
    )
    assert "seeds [0, 1, 2]: ×0.38, ×0.39, ×0.40" in text
    assert "1,000 test images, one augmented view per image, reg-weight auto (chose 0.0001)" in text
    assert "NOT converged" not in text
    groups[("spirograph", "invclr")][1]["converged"] = False
    assert "Probe NOT converged for spirograph-invclr-seed1" in results.table(groups)


@pytest.mark.parametrize(
    ("mean", "half", "lower", "says"),
    [(-1.0, 0.5, True, "supports"), (1.0, 0.5, True, "contradicts"),
     (1.0, 0.5, False, "supports"), (0.2, 0.5, True, "too noisy")],
)  # fmt: skip
def test_verdicts(mean, half, lower, says):
    assert results.verdict(mean, half, lower).startswith(says)


def test_a_measure_of_our_own_gives_no_verdict_on_the_paper():
    assert results.verdict(1.0, 0.5, True, paper=False) == "higher for InvCLR"
    assert results.verdict(-1.0, 0.5, True, paper=False) == "lower for InvCLR"


def test_a_record_made_with_other_settings_is_refused(tmp_path):
    flags = results.defining_flags("spirograph", "invclr", 0)
    good = {**record(0.02, 0.2), **flags}
    (tmp_path / "spirograph-invclr-seed0.json").write_text(json.dumps(good))
    assert results.read_records(tmp_path)[("spirograph", "invclr")][0]["mse"] == 0.02
    other = {**good, "train_command": good["train_command"].replace("1e-2", "1e-3")}
    (tmp_path / "spirograph-invclr-seed0.json").write_text(json.dumps(other))
    with pytest.raises(results.UsageError, match="other settings than the protocol's"):
        results.read_records(tmp_path)


def test_the_evaluation_line_is_found_past_later_output(tmp_path):
    log = tmp_path / "x.log"
    log.write_text('encoded\n{"mse": 0.5}\nsome warning printed after it\n')
    assert results.last_json(log) == {"mse": 0.5}
    log.write_text("no result\n")
    with pytest.raises(results.UsageError, match="no JSON result line"):
        results.last_json(log)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("spirograph-invclr-seed0.json", "[1, 2]"),
        ("x-seed0.json", "{}"),
        ("spirograph-invclr-seedX.json", "{}"),
    ],
)
def test_a_file_that_is_not_a_record_is_one_line(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(results.UsageError, match="is not a results record"):
        results.read_records(tmp_path)
