"""Ctrl-C at a safe point: a long loop asks to be told of SIGINT instead of being stopped mid-update.

Inside `DeferredInterrupt()`, the first Ctrl-C only sets `requested`; the loop checks it where its state is whole (after
an optimizer step), saves what it must and raises `KeyboardInterrupt` itself. A second Ctrl-C stops at once, as usual.
Outside the main thread (where Python cannot install signal handlers) it does nothing and Ctrl-C acts at once.
"""

from __future__ import annotations

import signal
import threading


class DeferredInterrupt:
    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def ignore_sigint() -> None:
    """For worker processes: Ctrl-C reaches the whole process group, and only the main process should act on it
    (it shuts its workers down itself)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
