"""Process pools: the project's one way to start one (`pool`), and running a call where a crash of native code
(decord aborting on a damaged file) costs only that call (`run_alone`), for extraction and `check-data`, which must
record such a video as bad and go on.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from mdmf.pipeline.core.interrupt import ignore_stop_signals

CRASHED = "the decoder crashed on this file (its process aborted)"


def pool(workers: int, initializer=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A process pool whose workers are forked where the platform can (cheap to start, and they see this process's
    state), each process one call at a time."""
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs)


def run_alone(fn, *args, initializer=None, initargs: tuple = ()) -> tuple[bool, object]:
    """`fn(*args)` in a process of its own -> (True, its result), or (False, None) when that process died."""
    with pool(1, initializer, initargs) as alone:
        try:
            return True, alone.submit(fn, *args).result()
        except BrokenProcessPool:
            return False, None


def quiet_worker_init(_: int = 0) -> None:
    """For decoding worker processes: one torch thread (parallelism comes from the processes), and Ctrl-C, SIGTERM
    and SIGUSR1 left to the main process, which stops the work and keeps what is done."""
    exit_with_parent()
    torch.set_num_threads(1)
    ignore_stop_signals()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent() -> None:
    """End this worker process as soon as its parent dies (a `kill -9` of the main process would otherwise leave
    decoders running until their loader's own check, seconds later). Linux: the kernel sends SIGKILL
    (`prctl(PR_SET_PDEATHSIG)`; the parent here is the thread that started the worker, which outlives its
    workers: the loader is driven and closed there). Elsewhere: a thread that watches the parent's pid."""
    parent = os.getppid()
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="mdmf-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _watch_parent(parent: int, every: float = 0.2) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)
