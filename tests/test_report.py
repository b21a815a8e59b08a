"""The study's tables and verdicts (study/claims.py, stats.py, tables.py, report.py), on records
made up so that the right answer is known: paired differences, Holm's correction, and tables
that a rerun rewrites byte for byte; and the committed report from the committed records."""

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

import study.plan
from augmentation.spirograph import DATA_PARAMS
from datasets.sources import DATASETS
from evaluation.measures import shift_flags
from study import report, stats
from study.__main__ import get_args_parser, main
from study.claims import Claim, Verdict, shift_drop
from study.half import Half
from study.plan import plan
from study.protocol import PROTOCOLS
from study.records import RecordError, command_line
from study.tables import epoch_seconds
from utils.cli import UsageError


def made_up(dataset: str, method: str, seed: int, suite: bool) -> dict:
    """An evaluation result: InvCLR's conditional variance is half SimCLR's on every seed; the
    probe's score differs by seed-dependent noise of both signs; --gp-every 4 is InvCLR."""
    cv = {"simclr": 0.02, "invclr": 0.01, "gp4": 0.01, "nolimit": 0.008, "random": 0.004}.get(
        method, 0.01
    )
    cv *= 1 + 0.01 * seed
    noise = [0.3, -0.4, 0.2, -0.1, 0.05][seed]
    base = 0.03 if dataset == "spirograph" else 40.0
    metric = "mse" if dataset == "spirograph" else "accuracy"
    value = base * (3 if method == "random" else 1) + (noise * 1e-3 if method == "invclr" else 0)
    across = 0.3 if method != "random" else 0.01  # the spread across images: alike when trained
    variance = {"conditional_variance": cv, "trace": cv, "across": across, "ratio": cv / across}
    result = {
        metric: value,
        "conditional_variance": {"theta": variance, "distortion": dict(variance)},
        # As the authors computed it: the spread across images, nearly
        "authors_variance": {"projected": across + cv, "trace": across + cv},
        "converged": True,
    }
    if dataset == "spirograph":  # --componentwise: each target's MSE
        result |= {f"mse_{name}": value for name in DATA_PARAMS}
    if suite:
        result["averaging_curve"] = {"points": [
            {"passes": 1, "images": images, metric: value}
            if passes == 1 else {"passes": passes, "images": images, metric: value * 0.9}
            for images in ("all", "subset") for passes in (1, 10)
        ], "subset": {"train": 1000, "test": 1000, "seed": 0}}  # fmt: skip
        for kind in shift_flags(DATASETS[dataset]):  # one shift of each kind the suite makes
            result[kind] = [{"amount": 0.0, metric: value}, {"amount": 0.5, metric: value * 0.8}]
        result["nuisance"] = {"relative": 0.5 + 0.01 * seed if method == "simclr" else 0.7}
        result["label_fractions"] = [{"fraction": 0.1, metric: value}]
    return result


def write_records(record, out, seeds=(0, 1, 2, 3, 4)):
    for job in plan(list(PROTOCOLS), list(seeds), out, record):
        job.record.parent.mkdir(parents=True, exist_ok=True)
        content = {"command": command_line(job.command), "machine": {"cpu": "test CPU", "cores": 2}}
        content["date"] = "2026-01-01 00:00"
        if job.kind == "train":
            epochs = [{"epoch": e + 1, "time_s": 10.0 * (2 if "invclr" in job.name else 1),
                       "contrastive_loss": 3.0 - e, "loss": 3.0 - e, "lr": 0.375, "penalty": 0.0}
                      for e in range(3)]  # fmt: skip
            if "nolimit" in job.name:  # no clamp: the penalty ends lower
                for row in epochs:
                    row |= {"penalty": 9.0 / row["epoch"], "gp_upper_limit": 1e9,
                            "clamp_fraction": 0.0}  # fmt: skip
            elif "simclr" not in job.name:  # penalised: the penalty, and how often it was clamped
                for row in epochs:
                    row |= {"penalty": 30.0 / row["epoch"], "gp_upper_limit": 1000.0,
                            "clamp_fraction": 0.25 if row["epoch"] == 1 else 0.0}  # fmt: skip
                if job.name == "spirograph-invclr-seed2":  # one later epoch at the clamp
                    epochs[1]["clamp_fraction"] = 0.1
            content |= {"epochs": epochs, "train_time_s": 30.0, "wall_s": 31.0}
        else:
            content["trained"] = content["date"]
            content["result"] = made_up(job.dataset, job.method, job.seed, "--suite" in job.command)
        job.record.write_text(json.dumps(content))


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """The first study's records, made up; the confirmatory protocol's jobs left out of the
    plan (tests/test_confirm.py tests them)."""
    monkeypatch.setattr(study.plan, "load", lambda *args: {})
    record, out, docs = tmp_path / "rec", tmp_path / "out", tmp_path / "docs"
    docs.mkdir()
    write_records(record, out)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\nrest\n")
    argv = ["report", "--record", str(record), "--out", str(out), "--readme", str(readme)]
    argv += ["--docs", str(docs)]
    return readme, docs, argv


def test_the_verdicts_are_the_paired_differences_with_holm_on_the_primary_claims(tables):
    readme, docs, argv = tables
    main(get_args_parser().parse_args(argv))
    readme_text, text = readme.read_text(), (docs / "results.md").read_text()
    # The README has the confirmatory protocol's primary lines (tests/test_confirm.py).
    assert "| 1. lower conditional variance (θ only) | spirograph | -0.0102 [" in readme_text
    rows = {line.split(" | ")[0] + "|" + line.split(" | ")[1]: line
            for line in text.splitlines() if line.startswith("| ")}  # fmt: skip
    theta = rows["| 1. lower conditional variance (θ only)|spirograph"]
    # Halved on every seed, with the seeds' 1% steps: a mean difference of -0.0102.
    assert "| -0.0102 [" in theta and theta.endswith("| 5 | primary | supports |")
    # Spirograph has two primary lines: the smaller p is tested at 97.5%.
    assert "| 97.5% |" in theta
    probe = rows["| 2. a better linear probe (lower test MSE)|spirograph"]
    assert "cannot tell (resolution ±" in probe and "| 95% |" in probe
    # CIFAR-10 has three primary lines.
    assert "| 98.3% |" in rows["| 1. lower conditional variance (θ only)|cifar10"]
    nuisance = rows["| 5. less information about the nuisance (nuisance MSE / baseline)|cifar10"]
    assert "| 3 | secondary | supports |" in nuisance  # the suite's seeds only
    assert text.count("| secondary | tracks the spread across images |") == 2
    table = text
    assert (
        "- seconds per epoch (a run's lower quartile, the median over seeds; × its cost against "
        "the same seed's SimCLR run, the median over seeds): SimCLR 10.0 (×1.00), InvCLR 20.0 "
        "(×2.00), InvCLR, --gp-every 4 10.0 (×1.00)." in table
    )
    # --gp-every 4 is InvCLR's variance and SimCLR's probe here.
    assert (
        "(θ only): gp-every 4 − exact +0 [+0, +0] (95%, uncorrected, 5 seeds): no difference "
        "detected (which "
        "does not make them equal); it keeps 100% of InvCLR − SimCLR (p = " in table
    )
    assert readme_text.startswith("intro\n") and readme_text.endswith(f"{report.END}\nrest\n")
    # Without the upper limit: 0.008 × (1 + 0.01 seed) against InvCLR's 0.01 × (1 + 0.01 seed).
    assert "| 3 | 25% | 10 / 3 | 0.0103 / 0.00824 | 0.0343 / 0.0275 | 0.0299 / 0.03 |" in table
    assert "limit (1000); later epochs of any seed that reached it: 1." in table
    assert "(θ only): no limit − limit -0.00204 [" in table
    assert "lower with no limit; it keeps 120% of InvCLR − SimCLR (p = " in table
    # The probe's InvCLR − SimCLR is not told from 0: a share of it would be a ratio of noises.
    assert (
        "(lower test MSE): gp-every 4 − exact -1e-05 [-0.0003512, +0.0003312] (95%, uncorrected, "
        "5 seeds): no difference detected (which does not make them equal); InvCLR − SimCLR is "
        "not told from 0 (p = 0.939, uncorrected, on these seeds), so there is no share." in table
    )


def test_a_variant_on_fewer_seeds_keeps_its_share_over_those_seeds_only(tables, tmp_path):
    """While the no-limit runs are under way, the share of InvCLR − SimCLR they keep is taken
    over the seeds they have, not over InvCLR's five."""
    readme, docs, argv = tables
    folder = tmp_path / "rec" / "spirograph"
    for seed in (2, 3, 4):
        for path in folder.glob(f"spirograph-nolimit-seed{seed}*"):
            path.unlink()
    # InvCLR − SimCLR is -0.02 and -0.0202 on seeds 0 and 1 (about -0.01 on the others); no
    # limit halves it there: 50% (over all five of InvCLR's seeds it would read 71%).
    values = {0: (0.03, 0.01, 0.02), 1: (0.0302, 0.01, 0.0201)}
    for seed in (0, 1):
        for method, cv in zip(("simclr", "invclr", "nolimit"), values[seed], strict=True):
            path = folder / f"spirograph-{method}-seed{seed}-epoch020.json"
            content = json.loads(path.read_text())
            content["result"]["conditional_variance"]["theta"]["conditional_variance"] = cv
            path.write_text(json.dumps(content))
    main(get_args_parser().parse_args(argv))
    table = (docs / "results.md").read_text()
    assert "(θ only): no limit − limit +0.01 [" in table
    assert "(95%, uncorrected, 2 seeds): " in table
    assert "; it keeps 50% of InvCLR − SimCLR (p = 0.00317, uncorrected, on these seeds)." in table
    assert "| random initialisation | 4 |" in (docs / "results.md").read_text()


def test_a_rerun_rewrites_both_files_byte_for_byte(tables):
    readme, docs, argv = tables
    main(get_args_parser().parse_args(argv))
    first = readme.read_bytes(), (docs / "results.md").read_bytes()
    main(get_args_parser().parse_args(argv))
    assert (readme.read_bytes(), (docs / "results.md").read_bytes()) == first


def test_a_record_of_another_command_does_not_count(tables, tmp_path):
    readme, docs, argv = tables
    path = tmp_path / "rec" / "spirograph" / "spirograph-invclr-seed4-epoch020.json"
    content = json.loads(path.read_text())
    content["command"] += " --num-passes 3"
    path.write_text(json.dumps(content))
    main(get_args_parser().parse_args(argv))
    theta = next(
        line
        for line in (docs / "results.md").read_text().splitlines()
        if line.startswith("| 1. lower conditional variance (θ only) | spirograph")
    )
    assert "| 4 | primary |" in theta  # seed 4 left out
    assert "1 of the study's jobs have no record yet" in readme.read_text()


def test_the_quoted_numbers_and_seed_0_s_row_per_weight_follow_the_records(tables, tmp_path):
    """study/quoted.py's limit shares, nuisance ranges and hours, and the λ sweep's final row,
    each read from the one record it names: a record changed here moves only its own number."""
    readme, docs, argv = tables
    folder = tmp_path / "rec" / "spirograph"

    def edit(name, change):
        path = folder / f"{name}.json"
        content = json.loads(path.read_text())
        change(content)
        path.write_text(json.dumps(content))

    def clamped(c):  # InvCLR seed 3: half its first epoch at the limit, a penalty of 300
        c["epochs"][0] |= {"clamp_fraction": 0.5, "penalty": 300.0}
        c["train_time_s"] = 7200.0

    def swept(c):  # λ = 1e-3: a second epoch at the limit, and its own last penalty
        c["epochs"][1]["clamp_fraction"] = 0.125
        c["epochs"][2]["penalty"] = 7.5

    def readout(c):  # the suite's seeds: a nuisance readout per parameter
        seed = c["result"]["nuisance"]["relative"] - 0.5  # 0.01 a seed (made_up)
        c["result"]["nuisance"]["per_param"] = {
            "a": {"mse": 0.2 + 10 * seed, "baseline_mse": 1.0},
            "b": {"mse": 0.25, "baseline_mse": 0.5},
        }

    edit("spirograph-invclr-seed3.train", clamped)
    edit("spirograph-lambda1e-3-seed0.train", swept)
    edit("spirograph-lambda1e-3-seed0-epoch020", lambda c: c["result"].update(mse=0.0123))
    for seed in range(5):
        edit(f"spirograph-simclr-seed{seed}.train", lambda c: c.update(train_time_s=1800.0))
        if seed != 3:
            edit(f"spirograph-invclr-seed{seed}.train", lambda c: c.update(train_time_s=3600.0))
    for seed in range(3):
        edit(f"spirograph-simclr-seed{seed}-epoch020", readout)
    main(get_args_parser().parse_args(argv))
    text = (docs / "results.md").read_text()
    spirograph = text[text.index("### spirograph, the first study's seeds") :]
    spirograph = spirograph[: spirograph.index("### cifar10")]
    assert "- λ = 1e-3, seed 0, steps at the limit: epoch 1 25.0%, epoch 2 12.5%\n" in spirograph
    assert ("- InvCLR (limit 1000), first epoch at the limit (its mean penalty): "
            "seed 0 25.0% (penalty 30), seed 1 25.0% (penalty 30), seed 2 25.0% (penalty 30), "
            "seed 3 50.0% (penalty 300), seed 4 25.0% (penalty 30); "
            "later epochs at it: 1\n") in spirograph  # fmt: skip
    assert (
        "- nuisance MSE / baseline per parameter, SimCLR (3 seeds): a 0.20–0.40, b 0.50–0.50\n"
        in spirograph
    )
    assert "trained: 1.50 h" in spirograph  # medians: 0.5 h of SimCLR, 1 h of InvCLR
    assert "| 1e-3 | 0.0123 | 0.01 | 0.3 | 0.0333 | 0.31 | 25% | 7.5 | 1 |" in text


def test_an_option_the_command_does_not_read_is_refused_not_ignored():
    refused = {
        ("figures", "--seeds", "5"): "--seeds is read by plan, run only",
        ("sweep", "--readme", "X.md"): "--readme is read by report only",
        ("report", "--retrain-anywhere"): "--retrain-anywhere is read by plan, run, sweep only",
    }
    for argv, said in refused.items():
        with pytest.raises(UsageError, match=said):
            main(get_args_parser().parse_args(list(argv)))


def test_holm_steps_down_and_shows_each_interval_at_its_tested_level():
    claim = Claim(1, "x", lambda r: 0.0, "lower", True)
    family = [Verdict(claim, stats.Paired(0, 1, 5, p), 0.95, p, "") for p in
              (0.01, 0.04, 0.03)]  # fmt: skip
    stats.holm(family)
    # Sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03 passes at 0.05 / 3; 2 x 0.03 = 0.06 fails, and
    # so does the last (max(0.06, 0.04)), shown at the failed step's level.
    assert [round(v.p, 6) for v in family] == [0.03, 0.06, 0.06]
    assert [round(v.level, 4) for v in family] == [round(1 - 0.05 / 3, 4), 0.975, 0.975]
    assert [stats.word(-1, v.p, "lower") for v in family] == [
        "supports", "cannot tell", "cannot tell"
    ]  # fmt: skip
    # An interval at its level excludes 0 exactly when the line passes.
    d = stats.paired({s: {"x": 1.0 + 0.1 * s} for s in range(5)},
                       {s: {"x": 0.0} for s in range(5)}, lambda r: r["x"])  # fmt: skip
    assert d.n == 5 and math.isclose(d.mean, 1.2)
    low, high = d.interval(0.95)
    assert math.isclose((low + high) / 2, d.mean) and 0 < low < high
    same = stats.paired({0: {"x": 1.0}, 1: {"x": 2.0}}, {0: {"x": 0.0}, 1: {"x": 1.0}},
                          lambda r: r["x"])  # fmt: skip
    assert math.isnan(same.p)  # no spread, no t statistic: "cannot tell", not "supports"


def test_a_shift_both_ways_counts_both_sides():
    half = Half("spirograph", {}, {}, 0)
    points = ((-0.5, 0.9), (-0.25, 0.3), (0.0, 0.1), (0.25, 0.2), (0.5, 0.3))
    shifted = {"shift_h_mean": [{"amount": a, "mse": m} for a, m in points]}
    assert math.isclose(shift_drop(half, "shift_h_mean")(shifted), 0.5)  # (0.9+0.3)/2-0.1
    cifar = Half("cifar10", {}, {}, 0)
    jitter = {"shift": [{"amount": 0.0, "accuracy": 50.0}, {"amount": 0.875, "accuracy": 40.0}]}
    assert shift_drop(cifar, "shift")(jitter) == 10.0  # points lost


def test_every_figure_is_drawn_from_the_records(tables, tmp_path):
    readme, docs, argv = tables
    for path in (tmp_path / "rec" / "spirograph").glob("*-epoch020.json"):
        content = json.loads(path.read_text())  # --componentwise: each target's MSE
        content["result"] |= {"mse_m": 0.01, "mse_b": 0.02, "mse_sigma": 0.03, "mse_rfore": 0.04}
        path.write_text(json.dumps(content))
    at = argv.index("--readme")  # the report's alone: figures refuse it
    main(get_args_parser().parse_args(["figures", *argv[1:at], *argv[at + 2 :]]))
    drawn = sorted(p.name for p in (docs / "figures").glob("*.png"))
    assert drawn == [
        "averaging-cifar10.png", "averaging-spirograph.png", "bunching-cifar10.png",
        "bunching-spirograph.png", "curves-cifar10.png",
        "curves-spirograph.png", "lambda-sweep-cifar10.png",
        "lambda-sweep-spirograph.png", "length-cifar10.png", "length-spirograph.png",
        "per-target-spirograph.png", "robustness-cifar10.png", "robustness-spirograph.png",
    ]  # fmt: skip


def test_the_invariance_table_holds_geometric_means_over_seeds(tables):
    readme, docs, argv = tables
    main(get_args_parser().parse_args(argv))
    text = (docs / "results.md").read_text()
    section = text[text.index("## spirograph") :]
    row = next(line for line in section.splitlines() if line.startswith("| SimCLR | 0.0"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # SimCLR's conditional variance is 0.02 × (1 + 0.01 seed) for seeds 0-4
    logs = [math.log(0.02 * (1 + 0.01 * s)) for s in range(5)]
    spread = math.exp(statistics.stdev(logs))
    assert cells[1] == f"{math.exp(statistics.fmean(logs)):.3g} (×/÷ {spread:.2f}, 5)"
    assert cells[2].startswith("0.3 (×/÷ 1.00, 5)")  # the spread across images
    # nuisance only where the suite ran (seeds 0-2): 0.5, 0.51, 0.52
    logs = [math.log(0.5 + 0.01 * s) for s in range(3)]
    spread = math.exp(statistics.stdev(logs))
    assert cells[5] == f"{math.exp(statistics.fmean(logs)):.3g} (×/÷ {spread:.2f}, 3)"
    # The numbers the notes quote: InvCLR's conditional variance is half SimCLR's on every seed
    # with the same spread across images, so the whole fall is in the ratio; the authors'
    # computation is the spread plus the conditional variance, within cv / across of the spread.
    section = text[text.index("## Numbers docs/invariance.md quotes") :]
    section = section[: section.index("### cifar10")]
    assert "- InvCLR / SimCLR, conditional variance θ: ×0.5 [0.5, 0.5], lower on 5 and" in section
    assert "- InvCLR / SimCLR, across images θ: ×1 [1, 1]" in section
    assert "across images accounts for 0% and the ratio (trace / across) for 100%" in section
    worst = {"trained": 0.02 * 1.04 / 0.3, "random": 0.004 * 1.04 / 0.01}  # SimCLR seed 4
    assert f"the authors' computation within {worst['trained']:.1%} of the spread" in section
    assert f"the authors' computation within {worst['random']:.1%} of the spread" in section
    assert "estimate 1.00–1.00 of its trace" in section


def test_a_half_without_a_pair_of_seeds_has_no_verdict_yet(tables, tmp_path):
    """While a dataset has SimCLR records but no InvCLR one, its verdicts are not "cannot tell"
    over 0 seeds: the tables say it has none yet."""
    readme, docs, argv = tables
    for path in (tmp_path / "rec" / "cifar10").glob("cifar10-invclr-*"):
        path.unlink()
    main(get_args_parser().parse_args(argv))
    for text in (readme.read_text(), (docs / "results.md").read_text()):
        assert "| cifar10 |" not in text and "**cifar10, the cheap penalty**" not in text
        assert "*cifar10: no seed has both its SimCLR and its InvCLR checkpoint evaluated" in text
        assert "| spirograph | -0.0102 [" in text  # the other half is judged as before


def test_a_cost_is_a_ratio_within_a_seed_so_a_slower_machine_moves_it_less():
    """Seed 0's --gp-every 4 run went to a machine almost three times slower than the one its
    SimCLR run had. Each seed's own ratio says 1.2; the ratio of the medians and the runs paired
    in sorted order would say 1.65, the mean of the ratios 1.9. Seed 3 has no SimCLR run and
    counts in neither figure."""

    def run(seconds):  # the lower quartile of these four epochs is ``seconds``
        return {"epochs": [{"time_s": seconds * f} for f in (1.0, 1.0, 1.5, 2.0)]}

    trainings = {("simclr", 0): run(10), ("simclr", 1): run(20), ("simclr", 2): run(30)}
    trainings |= {("gp4", 0): run(33), ("gp4", 1): run(24), ("gp4", 2): run(36)}
    trainings |= {("gp4", 3): run(1000), ("nolimit", 0): {"epochs": []}}
    costs = epoch_seconds(Half("cifar10", {}, trainings, 0))
    assert costs == {"simclr": (20.0, 1.0), "gp4": (33.0, pytest.approx(1.2))}


def test_the_committed_records_give_the_committed_report_byte_for_byte(tmp_path):
    """The README's verdicts and docs/results.md are what `python3 -m study report` makes of the
    records in git: a hand edit, a record changed without its report, or a change of the code
    that moves a number fails here."""
    repo = Path(__file__).resolve().parent.parent
    readme = tmp_path / "README.md"
    shutil.copy(repo / "README.md", readme)
    (tmp_path / "docs").mkdir()
    main(get_args_parser().parse_args(["report", "--readme", str(readme), "--docs",
                                       str(tmp_path / "docs")]))  # fmt: skip
    assert readme.read_bytes() == (repo / "README.md").read_bytes()
    assert (tmp_path / "docs" / "results.md").read_bytes() == (
        repo / "docs/results.md"
    ).read_bytes()


# A number as the notes write it: a sign (− or -), thousands commas, a decimal part or a percent.
QUOTED = re.compile(r"(?<![\w.])[−+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[−+-]?\d+)?%?")


def value(text: str) -> Decimal:
    return Decimal(text.replace("−", "-").replace(",", "").rstrip("%"))


def test_every_number_the_notes_quote_is_one_a_command_prints():
    """docs/invariance.md and the README's paragraph on the first study quote numbers that
    `python3 -m study report` prints (docs/results.md, docs/relative-sweep.md) or section 7's
    record holds: each number with a decimal part or a percent there must be some printed
    number, its sign kept, rounded to the digits it shows (a percent may be a printed
    fraction). A net, not a proof (a wrong number may round to some other printed one): it
    catches a number typed by hand and a quote left behind when the records move."""
    repo = Path(__file__).resolve().parent.parent
    printed = set()
    for name in ("results.md", "relative-sweep.md", "results/spirograph-invariance-study.json"):
        for text in QUOTED.findall((repo / "docs" / name).read_text()):
            printed |= {value(text), value(text) * 100}

    def is_printed(quote: str) -> bool:
        quoted = value(quote)
        step = Decimal(1).scaleb(quoted.as_tuple().exponent)
        return any(
            p.quantize(step, rounding=rounding) == quoted
            for p in printed
            if abs(p.adjusted() - quoted.adjusted()) <= 1
            for rounding in (ROUND_HALF_EVEN, ROUND_HALF_UP)
        )

    readme = (repo / "README.md").read_text()
    said = readme[readme.index("**What the first study said**") :]  # the README's paragraph
    notes = (repo / "docs/invariance.md").read_text() + said[: said.index("\n\n")]
    quotes = {q for q in QUOTED.findall(notes) if "." in q or q.endswith("%")}
    assert len(quotes) > 100  # the pattern still reads the notes
    assert sorted(q for q in quotes if not is_printed(q)) == []


def test_a_truncated_record_stops_the_report_and_the_figures_before_they_write(tables, tmp_path):
    readme, docs, argv = tables
    main(get_args_parser().parse_args(argv))
    written = readme.read_bytes(), (docs / "results.md").read_bytes()
    path = tmp_path / "rec" / "cifar10" / "cifar10-invclr-seed3-epoch010.json"
    path.write_bytes(path.read_bytes()[:100])
    at = argv.index("--readme")
    for command in (argv, ["figures", *argv[1:at], *argv[at + 2 :]]):
        with pytest.raises(RecordError, match="cifar10-invclr-seed3-epoch010.json is not JSON"):
            main(get_args_parser().parse_args(command))
    assert (readme.read_bytes(), (docs / "results.md").read_bytes()) == written
    assert not (docs / "figures").exists()
    # From the shell: one line naming the file, exit status 2, no traceback.
    done = subprocess.run([sys.executable, "-m", "study", *argv], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "cifar10-invclr-seed3-epoch010.json is not JSON" in done.stderr
    assert (readme.read_bytes(), (docs / "results.md").read_bytes()) == written
