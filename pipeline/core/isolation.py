"""Process pools: the project's one way to start one (`pool`), and running a call where a crash of native code
(decord aborting on a damaged file) costs only that call (`run_alone`), for extraction and `check-data`, which must
record such a video as bad and go on.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from mdmf.pipeline.core.interrupt import ignore_sigint

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
    """For decoding worker processes: one torch thread (parallelism comes from the processes), and Ctrl-C left to
    the main process, which stops the work and keeps what is done."""
    torch.set_num_threads(1)
    ignore_sigint()
