"""Graceful stop on SIGTERM (a scheduler's pre-emption) and SIGINT: a flag read between steps, so
the training loop saves a whole step before it exits. A second Ctrl-C quits at once, unsaved.
"""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """Context manager installing the handlers; ``signal`` is the number of the first signal
    received, or None."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        # Python delivers signals to the main thread only; elsewhere (a test runner's thread,
        # a notebook executor) the default behaviour stays.
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal is None:
            self.signal = signum
            name = signal.Signals(signum).name
            print(
                f"\n{name} received: finishing this step, then saving a checkpoint"
                + (" (Ctrl-C again to quit at once, unsaved)" if signum == signal.SIGINT else ""),
                file=sys.stderr,
                flush=True,
            )

    @property
    def requested(self) -> bool:
        return self.signal is not None


def ignore_sigint_in_worker(_: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C reaches the whole process group, and a worker that
    dies of it would turn a graceful stop into a crash; the main process decides instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
