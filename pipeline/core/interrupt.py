"""Stopping at a safe point: Ctrl-C (SIGINT), SIGTERM (what Slurm, Kubernetes and `kill` send before killing a job)
and SIGUSR1 (Slurm's `--signal=USR1@<seconds>` warning before a time limit) all mean "keep the work and stop".

* `stop_signals()`: for a whole command. SIGTERM and SIGUSR1 then act as Ctrl-C does: `KeyboardInterrupt` is raised
  where the main thread is, so every loop that keeps its work on Ctrl-C (extraction keeps each finished unit) keeps it
  on these signals too, instead of the process dying at once.
* `DeferredInterrupt()`: inside a loop whose state must not be cut mid-update (training). The first of these signals
  only sets `requested`; the loop checks it where its state is whole (after an optimizer step), saves what it must and
  raises `KeyboardInterrupt` itself. A second signal stops at once, as Ctrl-C does.

Either way `received()` tells which signal asked to stop, so the command can exit with the shell's code for it
(128 + the signal number: 130 SIGINT, 143 SIGTERM, 138 SIGUSR1). Outside the main thread (where Python cannot install
signal handlers) both do nothing. On leaving, the previous handlers are restored.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))
_received: list[int] = []  # the signals that asked this process to stop, first first


def received() -> int | None:
    """The signal that first asked this process to stop (through the handlers here), or None."""
    return _received[0] if _received else None


def forget_received() -> None:
    """Start a new command: no stop asked yet (for callers that run several commands in one process)."""
    _received.clear()


def _install(handler, signals) -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in signals}


def _restore(previous: dict) -> None:
    for s, old in previous.items():
        signal.signal(s, old)


def _as_ctrl_c(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


@contextmanager
def stop_signals():
    """Inside: SIGTERM and SIGUSR1 raise `KeyboardInterrupt` like Ctrl-C (and are remembered in `received()`)."""
    previous = _install(_as_ctrl_c, [s for s in STOP_SIGNALS if s != signal.SIGINT])
    try:
        yield
    finally:
        _restore(previous)


class DeferredInterrupt:
    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> "DeferredInterrupt":
        self._previous = _install(self._on_signal, STOP_SIGNALS)
        return self

    def __exit__(self, *exc) -> None:
        _restore(self._previous)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        _received.append(signum)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def ignore_stop_signals() -> None:
    """For worker processes: Ctrl-C reaches the whole process group, and Slurm signals every process of a job, but
    only the main process should act on them (it shuts its workers down itself, after keeping the work)."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
