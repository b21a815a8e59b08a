"""The confirmatory protocol (study/confirmatory.toml, design.py, confirm.py): the statistics
each line reports (sign-flip p, detectable difference, Holm with the family's size kept), the
words, the protocol's own checks, its jobs, and each family on records made up so that the
right answer is known."""

import json
import math
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from scipy import stats as scipy_stats

from augmentation.spirograph import DATA_PARAMS
from study import confirm, quoted, stats
from study.design import PROTOCOL_FILE, Line, load
from study.half import Half
from study.plan import confirmatory_plan, study_plan
from study.protocol import PROTOCOLS, RELATIVE_SWEEP, relative_method
from study.records import REPO, command_line
from study.report import seeds_for_the_paper
from utils.cli import InputError

METHODS = {"simclr", "invclr", "gp4", "nolimit", "random", "relative"}


def test_the_sign_flip_p_counts_every_pattern_of_signs():
    # [1, 2, 3]: the 8 sums are ±6, ±4, ±2, 0, 0; two reach |6|.
    assert stats.sign_flip_p((1.0, 2.0, 3.0)) == 2 / 8
    # |sum| ≥ 2 for all but the two patterns that sum to 0.
    assert stats.sign_flip_p((1.0, 2.0, -3.0)) == 1.0
    assert stats.sign_flip_p((0.1, 0.2, 0.3, 0.4, 0.5)) == 0.0625  # the floor at 5 seeds
    assert stats.sign_flip_p(tuple(range(1, 11))) == 2 / 1024
    # Against a null: the differences from it are what the signs flip.
    assert stats.sign_flip_p((2.0, 3.0, 4.0), null=1.0) == stats.sign_flip_p((1.0, 2.0, 3.0))


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("level", [0.95, 1 - 0.05 / 3])
def test_the_detectable_difference_is_found_with_the_power_asked_for(n, level):
    se = 0.01
    found = stats.detectable(se, n, level, 0.80)
    critical = scipy_stats.t.ppf(0.5 + level / 2, n - 1)
    # The exact power of the two-sided t test there, from scipy's noncentral t directly.
    shift = found / se
    power = scipy_stats.nct.sf(critical, n - 1, shift) + scipy_stats.nct.cdf(
        -critical, n - 1, shift
    )
    assert power == pytest.approx(0.80, abs=1e-6)
    # The usual approximation (t(1 − α/2) + t(0.80)) · SE is a little short of it.
    usual = (critical + scipy_stats.t.ppf(0.80, n - 1)) * se
    assert usual < found < 1.15 * usual
    assert stats.detectable(se, n, level, 0.5) < found


def test_the_seeds_needed_are_the_fewest_that_detect_the_difference():
    n = stats.seeds_needed(sd=1.0, difference=0.5, level=0.95, power=0.80)
    assert stats.detectable(1.0 / math.sqrt(n), n, 0.95, 0.80) <= 0.5
    assert stats.detectable(1.0 / math.sqrt(n - 1), n - 1, 0.95, 0.80) > 0.5
    assert 30 < n < 40  # about (1.96 + 0.84)² / 0.25 = 31, a few more for the t
    assert stats.seeds_needed(sd=1.0, difference=0.0, level=0.95, power=0.80) is None


def test_holm_keeps_the_family_size_where_a_line_has_no_data():
    adjusted, levels = stats.holm_steps([0.01, math.nan, 0.02])
    assert adjusted == pytest.approx([0.03, 1.0, 0.04])
    assert levels == pytest.approx([1 - 0.05 / 3, 1 - 0.05, 1 - 0.05 / 2])
    # The first failed step sets the level of every line after it.
    adjusted, levels = stats.holm_steps([0.001, 0.04, 0.03])
    assert adjusted == pytest.approx([0.003, 0.06, 0.06])
    assert levels == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2])


def line(better: str, margin: float | None = None) -> Line:
    return Line("x", "1", "a line", "invclr", "simclr", "final", "field", better, (0, 1),
                "mse", margin=margin)  # fmt: skip


def test_the_seeds_the_paper_s_gain_needs_are_costed_at_one_seed_s_training_hours():
    d = stats.paired_differences([0.5, -0.5, 1.0, -1.0, 0.0])  # sd 0.79: the seeds from the sd
    outcome = SimpleNamespace(line=SimpleNamespace(id="2a"), difference=d)
    trainings = {("simclr", s): {"train_time_s": 3600.0} for s in range(5)}
    trainings |= {("invclr", s): {"train_time_s": 1800.0 * (1 + s)} for s in range(5)}  # 1.5 h
    half = Half("cifar10", {}, trainings, 0)
    sd = 0.5 * math.sqrt(5 / 2)
    needed = stats.seeds_needed(sd, 0.3, 0.95, 0.80)
    [sentence, _] = seeds_for_the_paper(half, [outcome])
    assert f"(sd {sd:.3g} over 5 seeds): {needed} (with 50% power: " in sentence
    low, high = map(int, re.search(r"a factor of [\d.]+: (\d+) to (\d+)\.", sentence).groups())
    hours = f"{needed * 2.5:.0f} h ({low * 2.5:.0f} to {high * 2.5:.0f} h)."
    assert sentence.endswith(
        f"At 2.50 h of training a seed (each method's median training wall time over its "
        f"records): {hours}"
    )
    # The spread's own 95% interval: sd · sqrt(4 / χ²₄) at the upper and lower 2.5% points.
    for q, n in ((0.975, low), (0.025, high)):
        assert n == stats.seeds_needed(
            sd * math.sqrt(4 / scipy_stats.chi2.ppf(q, 4)), 0.3, 0.95, 0.80
        )
    assert seeds_for_the_paper(Half("spirograph", {}, trainings, 0), [outcome]) == []


def test_each_word_follows_the_interval_and_the_side_the_line_gives():
    assert confirm.word(line("lower"), -2, -1, 0) == "supports"
    assert confirm.word(line("lower"), 1, 2, 0) == "contradicts"
    assert confirm.word(line("higher"), 1, 2, 0) == "supports"
    assert confirm.word(line("higher"), -1, 2, 0) == "cannot tell"
    assert confirm.word(line("either"), -3, -1, 0) == "differs"
    assert confirm.word(line("zero"), 0.1, 1, 0) == "contradicts"
    assert confirm.word(line("zero"), -0.1, 1, 0) == "cannot tell"
    null = math.log(0.5)
    assert confirm.word(line("above", 0.5), null + 0.1, 1, null) == "holds"
    assert confirm.word(line("above", 0.5), -3, null - 0.1, null) == "fails"
    assert confirm.word(line("above", 0.5), null - 0.1, 1, null) == "unsettled"
    assert confirm.word(line("lower"), math.nan, math.nan, 0) == "cannot tell"


def test_a_field_path_picks_the_row_of_a_list_by_its_fields():
    result = {"averaging_curve": {"points": [
        {"passes": 10, "images": "subset", "accuracy": 1.0},
        {"passes": 10, "images": "all", "accuracy": 2.0},
    ]}, "conditional_variance": {"theta": {"ratio": 0.5}}}  # fmt: skip
    assert confirm.pick(result, "averaging_curve.points[passes=10,images=all].accuracy") == 2.0
    assert confirm.pick(result, "conditional_variance.theta.ratio") == 0.5
    with pytest.raises(StopIteration):
        confirm.pick(result, "averaging_curve.points[passes=30,images=all].accuracy")


def test_the_committed_protocol_reads_and_a_broken_one_is_refused_named(tmp_path):
    designs = load(METHODS)
    spirograph, cifar10 = designs["spirograph"], designs["cifar10"]
    assert spirograph.seeds == tuple(range(10)) and spirograph.new_seeds == (5, 6, 7, 8, 9)
    assert [f.name for f in spirograph.families][:2] == ["primary", "relative"]
    assert [line.id for line in spirograph.family("primary").lines] == ["1-theta", "2a", "2b"]
    assert spirograph.relative == RELATIVE_SWEEP.name and spirograph.averaged_passes == 30
    assert [line.id for line in cifar10.family("primary").lines][-1] == "2b"
    text = PROTOCOL_FILE.read_text()
    for broken, said in (
        (text.replace('measure = "nuisance"', 'measure = "nuisanse"', 1), "line 5 has measure"),
        (text.replace('b = "invclr"', 'b = "invclr2"', 1), "which the study lacks"),
        (text.replace('decides = "paired t"', 'decides = "wilcoxon"'), "other than the paired t"),
        (text.replace(", margin = 0.5", ""), "a margin goes with"),
        (text + "\n[[oops", "cannot be read"),
        (text.replace("seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n", "", 1), "lacks 'seeds'"),
        (
            text.replace("[words]", "[words]\nx = 1", 1).replace("alpha = 0.05", 'alpha = "a"'),
            "lacks|wrong kind|alpha",
        ),
    ):
        path = tmp_path / "confirmatory.toml"
        path.write_text(broken)
        with pytest.raises(InputError, match=said):
            load(METHODS, path)


def made_up_half(dataset: str = "spirograph", averaged: int = 7) -> Half:
    """InvCLR's conditional variance below SimCLR's on every seed; the probe noise of both
    signs; the relative penalty's spread at SimCLR's and its ratio below it; averaged probes
    for the first ``averaged`` seeds only."""
    evaluations, beside = {}, {}
    for seed in range(10):
        noise = [0.3, -0.4, 0.2, -0.1, 0.05, -0.2, 0.1, 0.4, -0.3, 0.0][seed] * 1e-3
        for method, cv, across, mse in (
            ("simclr", 0.004, 0.5, 0.02), ("invclr", 0.001, 0.04, 0.02 + noise),
            ("relative", 0.002, 0.5 * (1 + noise), 0.02 - noise),
        ):  # fmt: skip
            cv *= 1 + 0.02 * seed
            theta = {
                "conditional_variance": cv,
                "trace": cv,
                "across": across,
                "ratio": cv / across,
            }
            evaluations[(method, seed, 20)] = {"mse": mse, "conditional_variance": {"theta": theta},
                                               "authors_variance": {"trace": across}}  # fmt: skip
            if seed < averaged:
                beside[("averaged", method, seed)] = {"mse": mse / 3 - (method == "invclr") * 1e-3}
    return Half(dataset, evaluations, {}, 0, beside, {})


def test_each_family_is_tested_as_the_protocol_says():
    design, half = load(METHODS)["spirograph"], made_up_half()
    primary = {o.line.id: o for o in confirm.judge(half, design, design.family("primary"))}
    assert primary["1-theta"].word == "supports" and primary["1-theta"].difference.n == 10
    assert primary["2a"].word == "cannot tell" and primary["2a"].detectable > 0
    assert primary["2b"].difference.n == 7 and primary["2b"].word == "supports"
    # On 7 of the 10 seeds the line names the word is printed as provisional, and so is every
    # word of its Holm family, whose levels hang on that line's p.
    assert confirm.said(primary["2b"]) == "*provisional, 7 of 10 seeds*: supports"
    assert primary["1-theta"].complete and not primary["1-theta"].final
    assert confirm.said(primary["1-theta"]) == "*provisional, its family short of seeds*: supports"
    # Holm over three lines: the smallest p tested at α / 3.
    assert max(o.level for o in primary.values()) == pytest.approx(1 - 0.05 / 3)
    assert primary["1-theta"].sign_flip == 2 / 1024
    relative = confirm.judge(half, design, design.family("relative"))
    words = {o.line.id: o.word for o in relative}
    assert words["R0"] == "holds" and words["R1"] == "supports" and words["R2"] == "supports"
    assert confirm.reading(design, relative).startswith("Supports the explanation")
    # A penalty that does not lower the conditional variance tests nothing.
    weak = made_up_half()
    for (method, seed, epoch), result in weak.evaluations.items():
        if method == "relative":
            theta = result["conditional_variance"]["theta"]
            theta["conditional_variance"] = half.evaluations[("simclr", seed, epoch)][
                "conditional_variance"
            ]["theta"]["conditional_variance"] * (1.01 if seed % 2 else 0.99)
    weakly = confirm.judge(weak, design, design.family("relative"))
    assert {o.line.id: o.word for o in weakly}["R3"] == "cannot tell"
    assert confirm.reading(design, weakly).startswith("The relative penalty does not detectably")
    # Without the relative penalty's records its lines have no data: the check cannot settle.
    empty = Half("spirograph", {k: v for k, v in half.evaluations.items() if k[0] != "relative"},
                 {}, 0, {}, {})  # fmt: skip
    alone = confirm.judge(empty, design, design.family("relative"))
    assert confirm.reading(design, alone).startswith("The manipulation check does not settle")
    new = confirm.judge(half, design, design.family("new seeds alone"))
    assert [o.difference.n for o in new] == [5, 5, 2]  # seeds 5-9; averaged on 5 and 6 only
    assert all(o.level == 0.95 for o in new)  # uncorrected


def test_a_family_with_every_seed_it_names_prints_its_words_unmarked():
    design, half = load(METHODS)["spirograph"], made_up_half(averaged=10)
    primary = confirm.judge(half, design, design.family("primary"))
    assert all(o.final for o in primary)
    assert [confirm.said(o) for o in primary] == [
        "supports",
        f"cannot tell (detectable ±{primary[1].detectable:.3g})",
        "supports",
    ]


def test_the_protocol_adds_its_jobs_and_leaves_the_first_study_s_alone():
    out, record = Path("results"), Path("docs/results")
    chosen = relative_method("1e-2", "1e9")
    chosen = chosen.__class__(**{**chosen.__dict__, "name": "relative", "role": "relative"})
    jobs = {j.name: j for j in confirmatory_plan(list(PROTOCOLS), out, record, chosen)}
    assert "spirograph-invclr-seed5" in jobs and "spirograph-random-seed5" in jobs
    assert not any("gp4" in n or "nolimit" in n for n in jobs)
    assert "spirograph-invclr-seed0" not in jobs  # the first study's run, not added again
    averaged = jobs["spirograph-invclr-seed0-epoch020-m30"]
    assert averaged.command[-2:] == ["--num-passes", "30"]
    assert "--conditional-variance" not in averaged.command and averaged.variant == "averaged"
    assert averaged.checkpoint.name == "spirograph-invclr-seed0_epoch020.pth"
    relative = jobs["spirograph-relative-seed9"]
    assert relative.command[relative.command.index("--gp-scale") + 1] == "spread"
    assert "spirograph-relative-seed9-epoch005" not in jobs  # its final checkpoint only
    curves = sorted(n for n in jobs if n.endswith("-curve"))
    assert curves == sorted(f"cifar10-{m}-seed{s}-epoch010-curve" for s in (3, 4)
                            for m in ("invclr", "simclr"))  # fmt: skip
    # Without a chosen setting no relative job; the seeds a user names, only those.
    assert not any("relative" in j.name for j in confirmatory_plan(["spirograph"], out, record))
    some = study_plan(["spirograph"], out, record, None, [7])
    assert {j.seed for j in some} == {7} and not any("gp4" in j.name for j in some)


def test_a_record_counts_as_made_after_the_protocol_only_from_its_commit_or_later():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert confirm.made_after(head, head)
    assert not confirm.made_after(head, f"{head}+changes")
    assert not confirm.made_after(head, "")
    half = Half("spirograph", {}, {}, 0, {}, {"a": head, "b": f"{head}+changes"})
    assert confirm.before_protocol(half, ["a", "b", "c"], head) == ["b"]
    assert confirm.before_protocol(half, ["a", "b", "c"], None) == ["a", "b"]


def test_a_record_of_an_averaged_probe_or_a_curve_counts_without_the_variances(tmp_path):
    """The evaluations beside the study's run no conditional variance: their records are read
    without it (a record that lacked it was taken for a damaged one)."""
    chosen = relative_method("1e-2", "1e9")
    chosen = chosen.__class__(**{**chosen.__dict__, "name": "relative", "role": "relative"})
    jobs = confirmatory_plan(list(PROTOCOLS), tmp_path / "out", tmp_path, chosen)
    beside = [j for j in jobs if j.variant]
    assert {j.variant for j in beside} == {"averaged", "curve"}
    for job in beside[:1] + [j for j in beside if j.variant == "curve"][:1]:
        training = job.training
        training.record.parent.mkdir(parents=True, exist_ok=True)
        epoch = {k: 1.0 for k in ("epoch", "lr", "contrastive_loss", "penalty", "loss", "time_s")}
        epoch |= {"gp_upper_limit": 1e9, "clamp_fraction": 0.0}
        training.record.write_text(json.dumps({
            "command": command_line(training.command), "date": "2026-12-07 20:00:00",
            "train_time_s": 1.0, "machine": {"cpu": "test"}, "epochs": [epoch],
        }))  # fmt: skip
        result = {"converged": True, "mse": 0.01, "accuracy": 40.0, "num_passes": 30,
                  **{f"mse_{n}": 0.01 for n in DATA_PARAMS},
                  "averaging_curve": {"points": [{"passes": 10, "images": "all"}]}}  # fmt: skip
        job.record.write_text(json.dumps({
            "command": command_line(job.command), "trained": "2026-12-07 20:00:00",
            "machine": {"cpu": "test"}, "date": "2026-12-07 20:30:00", "result": result,
        }))  # fmt: skip
        assert job.read()["result"]["mse"] == 0.01 and job.done


def test_a_line_without_spread_over_seeds_gets_no_word_as_it_cannot_pass_holm():
    design, half = load(METHODS)["spirograph"], made_up_half()
    for (method, seed, epoch), result in half.evaluations.items():
        if method == "invclr":  # exactly 0.25 below SimCLR on every seed
            result["mse"] = half.evaluations[("simclr", seed, epoch)]["mse"] - 0.25
    line = next(
        o for o in confirm.judge(half, design, design.family("primary")) if o.line.id == "2a"
    )
    assert line.difference.mean == pytest.approx(-0.25) and math.isnan(line.difference.p)
    assert line.p == 1.0 and line.word == "cannot tell"


def test_the_first_study_s_tables_keep_its_own_seeds_and_methods():
    half = made_up_half()
    first = half.first_study()
    assert {s for (_, s, _) in first.evaluations} == {0, 1, 2, 3, 4}
    assert {m for (m, _, _) in first.evaluations} == {"simclr", "invclr"}  # not the relative one
    assert {s for (_, s, _) in half.evaluations} == set(range(10))


def test_the_fall_of_the_trace_splits_between_the_spread_and_the_ratio_in_logs():
    # InvCLR: the trace ×1/4 and the spread ×0.08 of SimCLR's, every seed, so of log(1/4) the
    # spread's log(0.08) is 182% and the ratio's log(3.125) is −82%.
    lines = quoted.ratios(made_up_half().first_study(), "invclr", "simclr")
    share = math.log(0.04 / 0.5) / math.log(0.25)
    assert lines[-1] == (
        "- InvCLR / SimCLR: of the log of the trace's ratio θ, the spread across images accounts "
        f"for {share:.0%} and the ratio (trace / across) for {1 - share:.0%}"
    )
    assert f"{share:.0%}" == "182%"
    assert lines[2].startswith("- InvCLR / SimCLR, across images θ: ×0.08 [0.08, 0.08], lower on 5")


def test_the_pin_names_the_commit_that_fixed_this_very_protocol():
    """study/confirmatory.commit: the protocol's SHA-256 is the pinned one (an edit of the
    protocol without a new pin fails here), and where git has the history, the pinned commit
    holds this file byte for byte."""
    commit = confirm.protocol_commit()
    assert commit is not None, "the protocol changed since its pin: pin the commit that fixes it"
    shown = subprocess.run(["git", "show", f"{commit}:study/confirmatory.toml"], cwd=REPO,
                           capture_output=True)  # fmt: skip
    if shown.returncode == 0:  # a copy without the history cannot check this part
        assert shown.stdout == PROTOCOL_FILE.read_bytes()


def test_seeds_no_job_of_the_study_has_are_refused_in_one_line(capsys):
    from study.__main__ import get_args_parser, main

    with pytest.raises(InputError, match="--seeds 10: no job of the study has that seed"):
        main(get_args_parser().parse_args(["plan", "--seeds", "10"]))
