"""The study's protocol as data: what is trained, on which seeds, for how long, and which
evaluations each checkpoint gets (docs/results.md; the README's verdicts).

Flag values that reach a command line are kept as the text the records hold ("1e-2", not 0.01):
a record counts only when its command is the one the plan gives its job, word for word.
"""

from __future__ import annotations

from dataclasses import dataclass

SEEDS = (0, 1, 2, 3, 4)
SUITE_SEEDS = (0, 1, 2)  # the whole suite on these seeds' final SimCLR and InvCLR checkpoints
SUITE_METHODS = ("simclr", "invclr")
SWEEP_SEED = 0
# Every evaluation: the probe (its reg-weight picked on held-out training images) and the
# conditional variance, as the paper defines it and as the authors computed it.
PROBE = ("--reg-weight", "auto")
VARIANCE = ("--conditional-variance", "--authors-variance")


@dataclass(frozen=True)
class Method:
    """One way of training: its name in job names, its label and colour in tables and figures,
    and its penalty flags. ``role``: "main" (every seed, paired with SimCLR), "sweep" (the
    λ sweep's seed only) or "ablation" (every seed, after the sweep)."""

    name: str
    label: str
    colour: str
    lambda_gp: str
    upper_limit: str | None = None
    gp_every: int = 1
    role: str = "main"
    gp_scale: str = "none"

    @property
    def flags(self) -> list[str]:
        flags = ["--lambda-gp", self.lambda_gp]
        flags += ["--gp-upper-limit", self.upper_limit] if self.upper_limit else []
        flags += ["--gp-scale", self.gp_scale] if self.gp_scale != "none" else []
        return flags + (["--gp-every", str(self.gp_every)] if self.gp_every != 1 else [])


@dataclass(frozen=True)
class Protocol:
    """One dataset's half of the study: the training settings every method shares, the methods,
    and how its checkpoints are evaluated."""

    dataset: str
    proportion: str
    epochs: int
    methods: tuple[Method, ...]
    script: str  # the evaluation script
    metric: str  # the probe's score in the evaluation's JSON: "mse" or "accuracy"
    variances: tuple[str, ...]  # the conditional variances read: what each redraws
    evaluate: tuple[str, ...] = ()  # extra flags of every evaluation
    save_freq: int = 5
    arch: str = "resnet18"
    width: str = "0.25"
    batch_size: int = 64
    base_lr: str = "1.5"

    @property
    def train_flags(self) -> list[str]:
        return [
            "--dataset", self.dataset, "--arch", self.arch, "--width", self.width,
            "--proportion", self.proportion, "--batch-size", str(self.batch_size),
            "--base-lr", self.base_lr, "--num-epochs", str(self.epochs),
            "--save-freq", str(self.save_freq), "--test-freq", "0",
        ]  # fmt: skip

    @property
    def checkpoints(self) -> list[int]:
        """The epochs whose checkpoints are kept (every ``save_freq``, the last included)."""
        return list(range(self.save_freq, self.epochs + 1, self.save_freq))

    @property
    def lower_is_better(self) -> bool:
        return self.metric == "mse"

    def role(self, role: str) -> list[Method]:
        return [m for m in self.methods if m.role == role]

    def method(self, name: str) -> Method:
        return next(m for m in self.methods if m.name == name)


SIMCLR = Method("simclr", "SimCLR", "tab:blue", "0")
RANDOM = Method("random", "random initialisation", "tab:gray", "0", role="none")
# The laptop settings: quarter-width ResNet-18, batch 64, base-lr 1.5 and a constant rate,
# 5,000 Spirograph images and 10,000 CIFAR-10 JPEGs.
PROTOCOLS: dict[str, Protocol] = {
    "spirograph": Protocol(
        "spirograph", proportion="0.05", epochs=20,
        methods=(
            SIMCLR,
            Method("invclr", "InvCLR", "tab:orange", "1e-2", "1000"),
            Method("gp4", "InvCLR, --gp-every 4", "tab:green", "1e-2", "1000", gp_every=4),
            # The conditional-variance figure's weights; 1e-2 is "invclr" itself.
            *(Method(f"lambda{w}", f"λ = {w}", "", w, "1000", role="sweep")
              for w in ("1e-4", "1e-3", "1e-1")),
            # Without the clamp (a limit no step reaches): a clamped penalty has no gradient.
            Method("nolimit", "InvCLR, no upper limit", "tab:red", "1e-2", "1e9", role="ablation"),
        ),
        script="lbfgs_linear_clf_spirograph.py", metric="mse", variances=("theta",),
        evaluate=("--componentwise",),  # the MSE of each regression target too
    ),
    "cifar10": Protocol(
        "cifar10", proportion="0.2", epochs=10,
        methods=(
            SIMCLR,
            Method("invclr", "InvCLR", "tab:orange", "0.1", "1"),
            Method("gp4", "InvCLR, --gp-every 4", "tab:green", "0.1", "1", gp_every=4),
            Method("nolimit", "InvCLR, no upper limit", "tab:red", "0.1", "1e9", role="ablation"),
        ),
        script="lbfgs_linear_clf.py", metric="accuracy", variances=("theta", "distortion"),
    ),
}  # fmt: skip


def described(name: str) -> Method:
    """The method called ``name`` in either half (for its label and colour), the
    random-initialisation encoder included."""
    methods = {m.name: m for p in PROTOCOLS.values() for m in p.methods}
    chosen = Method(RELATIVE_SWEEP.name, RELATIVE_SWEEP.label, RELATIVE_SWEEP.colour, "", role="")
    return {**methods, "random": RANDOM, chosen.name: chosen}[name]


@dataclass(frozen=True)
class Sweep:
    """Settings of a new method chosen before the study runs it: every method of ``methods`` is
    trained on ``seed``, a seed the study does not use, in ``dataset``'s protocol, and its final
    checkpoint evaluated as the study's are; `study.sweep` then applies ``rule``, fixed here
    before the first run."""

    name: str
    dataset: str
    seed: int
    methods: tuple[Method, ...]
    rule: str
    label: str = ""  # the chosen setting's, in the study's tables and figures
    colour: str = ""


def relative_method(lambda_gp: str, limit: str) -> Method:
    limited = "no limit" if limit == "1e9" else f"limit {limit}"
    name = f"relative{lambda_gp}-{'nolimit' if limit == '1e9' else 'limit' + limit}"
    return Method(name, f"P / s, λ = {lambda_gp}, {limited}", "", lambda_gp, limit,
                  role="sweep", gp_scale="spread")  # fmt: skip


# The relative penalty (--gp-scale spread, #37): the quotient's scale is not the penalty's, so
# neither the paper's λ nor its limit carries over. Five weights over four decades; no limit (a
# value no step reaches) and 1000, the paper's Spirograph limit, which in quotient units binds
# only in the first steps (the quotient falls from about 10³ to 30 within two epochs of a small
# trial run).
RELATIVE_SWEEP = Sweep(
    "relative", "spirograph", seed=100,
    methods=tuple(relative_method(w, limit) for limit in ("1e9", "1000")
                  for w in ("1e-4", "1e-3", "1e-2", "1e-1", "1")),
    rule=(
        "Among the settings whose run trained all its epochs and whose quotient sat at the clamp "
        "on at most half of all penalised steps, the one with the lowest probe MSE on the "
        "held-out 10% of the labelled training images (validation_mse, with --reg-weight auto) "
        "at the final checkpoint. The test split, the conditional variance, the spread and the "
        "within/across ratio are recorded but read by no part of the rule: they are what the "
        "study tests. No eligible setting: the study runs without the relative penalty."
    ),
    label="relative penalty (P / s)",
    colour="tab:purple",
)  # fmt: skip


def method_names() -> set[str]:
    """Every method a line of the confirmatory protocol may compare: both halves', the random
    encoder and the relative sweep's choice."""
    return {*(m.name for p in PROTOCOLS.values() for m in p.methods), RANDOM.name,
            RELATIVE_SWEEP.name}  # fmt: skip
