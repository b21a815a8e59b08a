"""The small-compute study (docs/results.md): InvCLR against SimCLR on every claim of the paper,
with enough seeds and length to tell, and the cheap penalty (--gp-every 4) against the exact one.

    python3 -m study plan                         # list the jobs, done or not; run nothing
    python3 -m study run                          # run what is missing, both datasets (hours)
    python3 -m study run --datasets spirograph    # one half
    python3 -m study report                       # README's verdicts and docs/results.md
    python3 -m study figures                      # docs/figures/*.png
    python3 -m study sweep                        # the relative penalty's settings (#37)

Each job writes a record under `docs/results/<dataset>/` when it ends; checkpoints and logs go
to `--out` (results/, ignored by git). Every command first reads every record there is, and a
damaged one stops it, named, before anything is written. `run` retrains a checkpoint that is
gone from its record's command, and keeps the run's records where every epoch's losses equal
them bit for bit (study/runner.py). `report` rewrites both files byte for
byte from the records; figures are a separate command, since PNG bytes follow the matplotlib
version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from study.design import load
from study.half import read_halves
from study.plan import Job, confirmatory_plan, plan, study_plan
from study.protocol import PROTOCOLS, RELATIVE_SWEEP, SEEDS
from study.records import REPO, shown
from study.report import write_report
from study.runner import elsewhere, run_jobs
from study.sweep import chosen, run_sweep, sweep_jobs, write_sweep
from utils.checkpoint import ensure_writable
from utils.cli import UsageError, run_cli, seed_value


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m study", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("command", choices=("plan", "run", "report", "figures", "sweep"),
                   help="what to do")  # fmt: skip
    p.add_argument("--datasets", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS),
                   help="plan, run: the halves (default: both, Spirograph first)")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=seed_value, default=None,
                   help="plan, run: only these seeds (default: the first study's 0-4, then "
                   "study/confirmatory.toml's)")  # fmt: skip
    p.add_argument("--retrain-anywhere", action="store_true",
                   help="run, sweep (and plan, to show it): retrain a run whose checkpoint is "
                   "gone on this machine even where "
                   "its record names another kind (CPU model, AVX-512, AMX, threads, torch): a "
                   "new run, its evaluations redone (default: defer its jobs)")  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "results",
                   help="checkpoints and logs (default: results/)")  # fmt: skip
    p.add_argument("--record", type=Path, default=REPO / "docs" / "results",
                   help="the records (default: docs/results/)")  # fmt: skip
    p.add_argument(
        "--readme",
        type=Path,
        default=REPO / "README.md",
        help="report: the file whose results section is replaced (default: README.md)",
    )
    p.add_argument(
        "--docs",
        type=Path,
        default=REPO / "docs",
        help="report, figures: where results.md and figures/ go (default: docs/)",
    )
    return p


def checked(args: argparse.Namespace) -> list[Job]:
    """The jobs of ``args``' scope, after every record of the whole study has been read: a
    damaged one anywhere stops every command before it writes anything."""
    if shown(args.out).startswith("/") and not shown(args.record).startswith("/"):
        # The records' commands name the checkpoints through --out; one outside the repository
        # would make the repository's records hold commands no other clone can match.
        raise UsageError(
            f"--out {args.out} is outside the repository, where --record is; give a folder "
            "inside it (or --record elsewhere too)"
        )
    known = set(SEEDS).union(*(d.seeds for d in load().values()))
    unknown = sorted(set(args.seeds or ()) - known)
    if unknown:  # no job of either study has them: the plan would be empty, not wrong
        raise UsageError(
            f"--seeds {' '.join(map(str, unknown))}: no job of the study has "
            f"{'that seed' if len(unknown) == 1 else 'those seeds'}; give seeds among "
            f"{', '.join(map(str, sorted(known)))}"
        )
    seeds = sorted(set(SEEDS) | set(args.seeds or ()))
    for job in sweep_jobs(RELATIVE_SWEEP, args.out, args.record):
        job.read()
    relative = chosen(RELATIVE_SWEEP, args.out, args.record)
    for job in plan(list(PROTOCOLS), seeds, args.out, args.record) + confirmatory_plan(
        list(PROTOCOLS), args.out, args.record, relative
    ):
        job.read()
    return study_plan(args.datasets, args.out, args.record, relative, args.seeds)


# The commands that read each option beyond --out and --record; another command refuses it.
READ_BY = {
    "datasets": ("plan", "run"),
    "seeds": ("plan", "run"),
    "retrain_anywhere": ("plan", "run", "sweep"),
    "readme": ("report",),
    "docs": ("report", "figures", "sweep"),
}


def refuse_unread(args: argparse.Namespace) -> None:
    """An option given to a command that does not read it is refused, not ignored."""
    defaults = get_args_parser()
    for name, commands in READ_BY.items():
        if args.command not in commands and getattr(args, name) != defaults.get_default(name):
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"{flag} is read by {', '.join(commands)} only: python3 -m study "
                f"{args.command} would ignore it; leave it out"
            )


def main(args: argparse.Namespace) -> list[Job] | str | list[Path]:
    refuse_unread(args)
    jobs = checked(args)
    if args.command == "plan":
        todo, waiting = [], 0
        for job in jobs:
            done = job.done
            todo += [] if done else [job]
            kind = None if done or args.retrain_anywhere else elsewhere(job)
            waiting += kind is not None
            wait = f"; retrain on {kind}, or --retrain-anywhere" if kind else ""
            print(f"{'done' if done else 'todo'}  {job.name}  ({job.kind}{wait})")
        later = f"; {waiting} of those to go wait for another machine" if waiting else ""
        print(f"{len(jobs) - len(todo)} of {len(jobs)} jobs done{later}")
        return todo
    if args.command == "run":
        return run_jobs(jobs, args.out, args.retrain_anywhere)
    if args.command == "sweep":
        ensure_writable(args.docs, "--docs")
        sweep = sweep_jobs(RELATIVE_SWEEP, args.out, args.record)
        run_sweep(sweep, args.out, args.retrain_anywhere)
        text = write_sweep(RELATIVE_SWEEP, sweep, args.docs / f"{RELATIVE_SWEEP.name}-sweep.md")
        print(text)
        return text
    halves, missing = read_halves(args.record, args.out)
    if not halves:
        raise UsageError(f"no study records in {args.record}; run python3 -m study run")
    if args.command == "report":
        if not args.readme.is_file():
            raise UsageError(f"--readme {args.readme} is not a file; give the README to update")
        ensure_writable(args.docs, "--docs")  # before the README is rewritten, not after
        section = write_report(halves, missing, args.readme, args.docs)
        print(section)
        return section
    from study.figures import draw  # matplotlib: for the figures only

    written = draw(halves, args.docs / "figures")
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    run_cli(main, get_args_parser())
