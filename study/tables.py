"""The tables of docs/results.md beyond the verdicts: every seed's numbers, the measures of
invariance, the cheap penalty and each method's cost, the λ sweep, training length, and the
upper limit."""

from __future__ import annotations

import math
import statistics
from collections import Counter

from study.claims import authors, claims, score, variance, variances
from study.half import Half
from study.protocol import SWEEP_SEED, described
from study.records import in_words
from study.stats import ALPHA, fmt, paired, plain, seeds


def per_seed_table(half: Half) -> list[str]:
    kinds = variances(half)
    head = (
        f"| encoder | seed | {half.protocol.metric} | "
        + " | ".join(f"cond. var. {k}" for k in kinds)
        + " | authors' trace | across images θ | probe converged | training wall time (min) |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    ablations = [m.name for m in half.protocol.role("ablation")]
    for method in [*half.main_methods, *ablations, "random"]:
        for seed, r in sorted(half.results(method).items()):
            train = half.trainings.get((method, seed))
            lines.append(
                f"| {described(method).label} | {seed} | {score(half)(r):.4g} | "
                + " | ".join(f"{variance(k)(r):.3g}" for k in kinds)
                + f" | {authors(r):.3g} | {variance('theta', 'across')(r):.3g} | "
                f"{'yes' if r['converged'] else 'NO'} | "
                + (f"{train['train_time_s'] / 60:.1f}" if train else "–")
                + " |"
            )
    return lines


def invariance_table(half: Half) -> list[str]:
    """The measures of invariance side by side (geometric mean over seeds, ×/÷ its spread), to
    show how much of each is the spread across images: the paper's conditional variance, that
    spread, their ratio, the authors' computation, and how well a linear probe reads the nuisance
    (the suite's seeds; 1 would be no better than predicting its mean)."""
    measures = {  # name -> (what it reads, the key a record needs for it)
        "cond. var. θ": (variance("theta"), "conditional_variance"),
        "across images θ": (variance("theta", "across"), "conditional_variance"),
        "ratio (trace / across)": (variance("theta", "ratio"), "conditional_variance"),
        "authors' trace": (authors, "authors_variance"),
        "nuisance MSE / baseline": (lambda r: r["nuisance"]["relative"], "nuisance"),
    }
    lines = ["| encoder | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|"]
    for method in [*half.main_methods, "random"]:
        results = half.results(method).values()
        if not results:
            continue
        cells = []
        for measure, key in measures.values():
            logs = [math.log(measure(r)) for r in results if key in r]
            if not logs:
                cells.append("–")
                continue
            spread = math.exp(statistics.stdev(logs)) if len(logs) > 1 else 1.0
            cells.append(f"{math.exp(statistics.fmean(logs)):.3g} (×/÷ {spread:.2f}, {len(logs)})")
        lines.append(f"| {described(method).label} | " + " | ".join(cells) + " |")
    return lines


def metric(half: Half) -> str:
    """The probe's number, as a column or an axis names it."""
    return "test MSE" if half.lower_is_better else "test accuracy (%)"


def held(epoch: dict) -> float:
    """The share of an epoch's penalised steps at the limit (0 where the record has none)."""
    return epoch.get("clamp_fraction") or 0.0


def limit_cell(epoch: dict) -> str:
    """That share as a table's cell: "–" where the record has none (SimCLR's, unpenalised)."""
    return f"{epoch['clamp_fraction']:.0%}" if "clamp_fraction" in epoch else "–"


def sweep_runs(half: Half) -> list[tuple[str, str]]:
    """The λ sweep's runs of seed 0, by weight: (the weight as a label, the method)."""
    runs = {
        "0 (SimCLR)": "simclr",
        **{m.lambda_gp: m.name for m in half.protocol.role("sweep")},
        f"{half.protocol.method('invclr').lambda_gp} (InvCLR)": "invclr",
    }
    return sorted(runs.items(), key=lambda kv: float(kv[0].split()[0]))


def sweep_table(half: Half) -> list[str]:
    """The conditional variance (θ) of seed 0 at every checkpoint, for each λ, both ways."""
    epochs = half.protocol.checkpoints
    lines = [
        "| λ | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
        "|---" * (len(epochs) + 1) + "|",
    ]
    for label, method in sweep_runs(half):
        cells = []
        for epoch in epochs:
            r = half.evaluations.get((method, SWEEP_SEED, epoch))
            cells.append(f"{variance('theta')(r):.3g} / {authors(r):.3g}" if r else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def sweep_final(half: Half) -> list[str]:
    """Seed 0's final checkpoint at each λ: the probe, the measures of invariance, and what
    training ended with (the penalty and NT-Xent of the last epoch, the first epoch's share of
    steps at the limit)."""
    lines = [
        f"| λ | {metric(half)} | cond. var. θ | across images θ | ratio (trace / across) | "
        "authors' trace | epoch 1 at the limit | penalty, last epoch | NT-Xent, last epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, method in sweep_runs(half):
        r = half.evaluations.get((method, SWEEP_SEED, half.final))
        t = half.trainings.get((method, SWEEP_SEED))
        if r is None or t is None:
            continue
        first, last = t["epochs"][0], t["epochs"][-1]
        lines.append(
            f"| {label} | {score(half)(r):.4g} | "
            + " | ".join(f"{variance('theta', f)(r):.3g}" for f in ("conditional_variance",
                                                                     "across", "ratio"))
            + f" | {authors(r):.3g} | {limit_cell(first)} | {last['penalty']:.3g} | "
            f"{last['contrastive_loss']:.4g} |"
        )  # fmt: skip
    return lines


def length_table(half: Half) -> list[str]:
    """InvCLR − SimCLR at each checkpoint: the probe's score and the conditional variance."""
    lines = [
        "| epochs | probe: InvCLR − SimCLR | cond. var. θ: InvCLR − SimCLR | seeds |",
        "|---|---|---|---|",
    ]
    for epoch in half.protocol.checkpoints:
        a, b = half.results("invclr", epoch), half.results("simclr", epoch)
        s, v = paired(a, b, score(half)), paired(a, b, variance("theta"))
        lines.append(
            f"| {epoch} | {fmt(s.mean, '.4g')} ± {plain(s.se)} | {fmt(v.mean)} ± {plain(v.se)} "
            f"| {s.n} |"
        )
    return lines


def against_random(half: Half) -> list[str]:
    random = half.results("random")
    lines = []
    for method in half.main_methods:
        d = paired(half.results(method), random, score(half))
        if d.n:
            better = [
                s
                for s in set(half.results(method)) & set(random)
                if (score(half)(half.results(method)[s]) < score(half)(random[s]))
                == half.lower_is_better
            ]
            lines.append(
                f"- {described(method).label} − random initialisation, {half.dataset} probe: "
                f"{fmt(d.mean, '.4g')} ± {plain(d.se)}; better in {len(better)} of "
                f"{seeds(d.n)}."
            )
    return lines


def machines(halves: list[Half]) -> str:
    """Each kind of machine the training records name (study/records.py's KIND: what orders the
    float sums), with how many runs it trained."""
    kinds = Counter(in_words(t["machine"]) for h in halves for t in h.trainings.values())
    return "; ".join(f"{kind} ({n} training runs)" for kind, n in sorted(kinds.items())) or "–"


def against_exact(half: Half, method: str, name: str, base: str = "exact") -> list[str]:
    """``method`` against InvCLR (the exact penalty, the paper's settings; ``base`` names it) on
    claims 1 and 2, paired by seed, and how much of InvCLR − SimCLR it keeps."""
    lines = []
    for claim in [c for c in claims(half) if c.primary]:
        d = paired(half.results(method), half.results("invclr"), claim.measure)
        low, high = d.interval(1 - ALPHA)
        said = (
            "no difference detected (which does not make them equal)"
            if math.isnan(d.p) or d.p >= ALPHA
            else (f"lower with {name}" if d.mean < 0 else f"higher with {name}")
        )
        # How much of the exact penalty's effect the variant keeps, over the seeds all three have
        # (a variant still running has fewer seeds than InvCLR).
        common = set(half.results(method)) & set(half.results("invclr"))
        variant, exact = (
            paired(
                {s: r for s, r in half.results(m).items() if s in common},
                half.results("simclr"),
                claim.measure,
            )
            for m in (method, "invclr")
        )
        share = variant.mean / exact.mean if exact.mean else math.nan
        # The p beside the share: this line is uncorrected, where the verdict on InvCLR − SimCLR
        # above is Holm-corrected (a share can stand beside a "cannot tell" there).
        p = f"p = {exact.p:.3g}, uncorrected, on these seeds"
        if math.isnan(exact.p) or exact.p >= ALPHA:
            # A share of a difference the seeds do not tell from 0 is a ratio of noises.
            p = "" if math.isnan(exact.p) else f" ({p})"
            kept = f"; InvCLR − SimCLR is not told from 0{p}, so there is no share"
        else:
            kept = "" if math.isnan(share) else f"; it keeps {share:.0%} of InvCLR − SimCLR ({p})"
        lines.append(
            f"- {claim.text}: {name} − {base} {fmt(d.mean, claim.digits)} "
            f"[{fmt(low, claim.digits)}, {fmt(high, claim.digits)}] (95%, uncorrected, "
            f"{seeds(d.n)}): "
            f"{said}{kept}."
        )
    return lines


def cheap_penalty(half: Half) -> list[str]:
    """--gp-every 4 against the exact penalty on claims 1 and 2, and each method's cost."""
    lines = against_exact(half, "gp4", "gp-every 4")
    costs = epoch_seconds(half)
    if "simclr" in costs:
        lines.append(
            "- seconds per epoch (a run's lower quartile, the median over seeds; × its cost "
            "against the same seed's SimCLR run, the median over seeds): "
            + ", ".join(f"{described(m).label} {s:.1f} (×{r:.2f})" for m, (s, r) in costs.items())
            + "."
        )
    return lines


def upper_limit(half: Half) -> list[str]:
    """InvCLR with the paper's upper limit against InvCLR without one, paired by seed: how often
    the limit held the penalty (a clamped penalty has no gradient), the penalty each run ended
    with, and claims 1 and 2."""
    free = half.results("nolimit")
    if not free:
        return []
    clamped = half.results("invclr")
    limited = [t for (m, _), t in sorted(half.trainings.items()) if m == "invclr"]
    lines = [
        "| seed | epoch 1 at the limit (InvCLR) | penalty, last epoch: limit / none | "
        "cond. var. θ: limit / none | ratio (trace / across) θ: limit / none | "
        "probe: limit / none |",
        "|---|---|---|---|---|---|",
    ]
    for seed in sorted(set(free) & set(clamped)):
        runs = [half.trainings.get((m, seed)) for m in ("invclr", "nolimit")]
        if None in runs:
            continue
        lines.append(
            f"| {seed} | {limit_cell(runs[0]['epochs'][0])} | "
            + " / ".join(f"{t['epochs'][-1]['penalty']:.3g}" for t in runs)
            + f" | {variance('theta')(clamped[seed]):.3g} / {variance('theta')(free[seed]):.3g}"
            + " | "
            + " / ".join(f"{variance('theta', 'ratio')(r[seed]):.3g}" for r in (clamped, free))
            + f" | {score(half)(clamped[seed]):.4g} / {score(half)(free[seed]):.4g} |"
        )
    if limited:
        later = sum(held(e) > 0 for t in limited for e in t["epochs"][1:])
        lines += [
            "",
            "Epoch 1 at the limit: the share of InvCLR's penalised steps in its first epoch at "
            f"which the penalty sat at the limit ({limited[0]['epochs'][0]['gp_upper_limit']:g}); "
            f"later epochs of any seed that reached it: {later}.",
        ]
    return [*lines, "", *against_exact(half, "nolimit", "no limit", "limit")]


def epoch_seconds(half: Half) -> dict[str, tuple[float, float]]:
    """Each method's seconds per epoch and its cost against SimCLR, over the seeds that have
    both runs. Per run the lower quartile of its epochs' times (other work on a 2-core machine
    only ever slows an epoch, and every epoch is the same work); the seconds are the median over
    those seeds, the ratio the median of each run's against its own seed's SimCLR run, trained
    beside it: a seed's runs share a session and so a machine, and the machines differ by more
    than the methods do."""
    quartile = {}
    for (method, seed), training in half.trainings.items():
        times = sorted(row["time_s"] for row in training["epochs"])
        if times and method in half.main_methods:
            quartile[method, seed] = times[(len(times) - 1) // 4]
    costs = {}
    for method in half.main_methods:
        runs = {seed: s for (m, seed), s in quartile.items()
                if m == method and ("simclr", seed) in quartile}  # fmt: skip
        if runs:
            ratios = [s / quartile["simclr", seed] for seed, s in runs.items()]
            costs[method] = (statistics.median(runs.values()), statistics.median(ratios))
    return costs
