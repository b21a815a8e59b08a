"""A script's command line run in this process, as its ``__main__`` block runs it: importing torch
and torchvision costs about 4 s a process on the 2-core VM, paid here once per session rather than
once per call. Tests that need a process of their own (signals, resource limits, torchrun) start
one."""

import contextlib
import importlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

from utils.cli import UsageError, run_cli

REPO = Path(__file__).resolve().parent.parent


def run_script(
    name: str, cwd: Path, *argv: str, entry: str = "main"
) -> subprocess.CompletedProcess:
    """``python3 <name> <argv>`` in ``cwd`` (``name`` a script, or a module as ``-m`` takes it):
    its exit status, stdout and stderr. ``entry``: the function its ``__main__`` block hands to
    `run_cli`."""
    module = importlib.import_module(Path(name).stem if name.endswith(".py") else name)
    out, err = io.StringIO(), io.StringIO()
    before, sys_argv, code = os.getcwd(), sys.argv, 0
    try:
        os.chdir(cwd)
        sys.argv = [module.__file__, *argv]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_cli(getattr(module, entry), module.get_args_parser())
            except SystemExit as exit_info:
                code = (
                    exit_info.code if isinstance(exit_info.code, int) else int(bool(exit_info.code))
                )
    finally:
        os.chdir(before)
        sys.argv = sys_argv
    return subprocess.CompletedProcess([name, *argv], code, out.getvalue(), err.getvalue())


def run_logged(command: list[str], log: Path) -> float:
    """`study.runner.run` in this process: the command's output into ``log``, the seconds it
    took; a failure is the `UsageError` the runner raises."""
    start = time.perf_counter()
    done = run_script(command[0], REPO, *command[1:])
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise UsageError(f"`{' '.join(command)}` failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start
