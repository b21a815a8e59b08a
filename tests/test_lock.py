"""One run per name (utils/lock.py): a second run on a name in use refuses in one line."""

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from test_crash_safety import RUN, finish, start, wait_for_training

from utils import lock
from utils.cli import UsageError


def test_a_held_name_is_refused_with_its_holder_and_free_again_after(tmp_path):
    with lock.run_lock(tmp_path, "run") as path:
        assert path.read_text().split() == [socket.gethostname(), str(os.getpid())]
        with pytest.raises(UsageError, match=r"held by process \d+ on .*another --filename"):
            with lock.run_lock(tmp_path, "run"):
                pass
        with lock.run_lock(tmp_path, "other"):  # another name is another lock
            pass
    with lock.run_lock(tmp_path, "run"):  # released with the block
        pass


def test_without_flock_the_lock_file_names_its_holder_and_is_taken_over_when_it_is_gone(
    tmp_path, monkeypatch
):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_flock)
    pidlock = tmp_path / "run.pidlock"
    with lock.run_lock(tmp_path, "run"):
        assert pidlock.read_text().split()[1] == str(os.getpid())
        with pytest.raises(UsageError, match="held by process"):
            with lock.run_lock(tmp_path, "run"):
                pass
    assert not pidlock.exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    pidlock.write_text(f"{socket.gethostname()} {gone}\n")  # a holder that has exited
    with lock.run_lock(tmp_path, "run"):
        pass
    pidlock.write_text("elsewhere 1\n")  # a holder on another host cannot be checked
    with pytest.raises(UsageError, match="process 1 on elsewhere"):
        with lock.run_lock(tmp_path, "run"):
            pass


def test_two_runs_started_together_on_one_name_one_trains_one_refuses(tmp_path):
    first, second = start(tmp_path, *RUN), start(tmp_path, *RUN)
    outcomes = sorted([finish(first), finish(second)], key=lambda o: o[0])
    (code_a, _, err_a), (code_b, _, err_b) = outcomes
    assert code_a == 0, err_a[-2000:]
    assert code_b == 2 and err_b.strip().count("\n") == 0, err_b
    assert "another run is using this name" in err_b and "Traceback" not in err_b
    metrics = (tmp_path / "checkpoint" / "output.metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in metrics] == [1, 2]  # one run's epochs


def test_a_lock_left_by_a_killed_run_does_not_block_its_resume(tmp_path):
    proc = start(tmp_path, *RUN, "--save-every-steps", "1")
    wait_for_training(proc)
    while not (tmp_path / "checkpoint" / "output.pth").is_file() and proc.poll() is None:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: the kernel drops the flock with the process
    proc.communicate()
    code, _, err = finish(start(tmp_path, *RUN, "--resume", "output.pth"))
    assert code == 0, err[-2000:]
