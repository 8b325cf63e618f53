"""Progress of the long-running loops (extraction, training, evaluation).

On a terminal (or in Jupyter): a rich progress bar. Otherwise (output to a file or a pipe, as in every cluster job):
one plain line every `MDMF_PROGRESS_EVERY` seconds (default 30) and a last one when the loop ends, each written and
flushed at once, never cut to a width:

    train head: 150/1000 steps (15.0 %), 3.21 steps/s, elapsed 0:00:47, ETA 0:04:25, loss=1.234 acc=56.2

The rate is the mean since the loop started (work already done before it, e.g. resumed steps, not counted).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mdmf.pipeline.core.errors import MdmfError

EVERY_ENV = "MDMF_PROGRESS_EVERY"
DEFAULT_EVERY = 30.0  # seconds between plain progress lines


def _fields(fields: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_every() -> float:
    """Seconds between plain progress lines: `MDMF_PROGRESS_EVERY`, else 30."""
    text = os.environ.get(EVERY_ENV, "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_EVERY
    except ValueError:
        raise MdmfError(f"{EVERY_ENV}={text!r}: give the seconds between progress lines, e.g. 30") from None


def progress_note(text: str, kind: str | None = "note") -> None:
    """One line on standard error beside the progress (a default chosen from the data, a warning; `kind` None: a
    plain step such as "loading the model"), never folded. `text` is plain, not markup."""
    from rich.markup import escape

    prefix = f"[yellow]{kind}:[/] " if kind else ""
    Console(stderr=True).print(prefix + escape(text), highlight=False, soft_wrap=True)


class _ForeignRecords(logging.Handler):
    """Other libraries' log records (WARNING and up) as our own `warning: <library>: ...` lines, or dropped."""

    def __init__(self, show: bool, source: str):
        super().__init__(logging.WARNING)
        self.show, self.source = show, source

    def emit(self, record: logging.LogRecord) -> None:
        if self.show:
            name = record.name if record.name != "root" else self.source
            progress_note(f"{name}: {record.getMessage()}", "warning")


@contextmanager
def foreign_logs(show: bool = True, source: str = "open_clip") -> Iterator[None]:
    """While the block runs, what other libraries log reaches the root logger's handlers in our form (open_clip
    logs to the root logger, which a `basicConfig` elsewhere prints as a raw `WARNING:root:` line), or nothing with
    `show=False` (--quiet). The root logger's own handlers are put back after."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [_ForeignRecords(show, source)]
    try:
        yield
    finally:
        root.handlers = saved


def progress_line(description: str, done: int, total: int, unit: str, rate: float | None, elapsed: float,
                  fields: dict) -> str:
    """One plain progress line: done/total (percent), rate, elapsed, ETA, the loop's fields."""
    parts = [f"{description}: {done}/{total} {unit}" + (f" ({100.0 * done / total:.1f} %)" if total else "")]
    if rate:
        parts.append(f"{rate:.3g} {unit}/s")
    parts.append(f"elapsed {_clock(elapsed)}")
    if rate and done < total:
        parts.append(f"ETA {_clock((total - done) / rate)}")
    line = ", ".join(parts)
    return f"{line}, {_fields(fields)}" if fields else line


@contextmanager
def progress_bar(enabled: bool, description: str, total: int, unit: str = "items",
                 completed: int = 0) -> Iterator[Callable[..., None]]:
    """Yields `advance(n=1, **fields)`; shows items/s. Disabled: a no-op, so loops need no branches.

    `completed`: work already done when the loop starts (a resumed run's steps)."""
    if not enabled:
        yield lambda n=1, **fields: None
        return
    console = Console()
    if not (console.is_terminal or console.is_jupyter):
        with _plain_lines(description, total, unit, completed, sys.stdout) as advance:
            yield advance
        return
    columns = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, info="", rate="")

        def advance(n: int = 1, **fields) -> None:
            progress.advance(task, n)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:.1f} {unit}/s" if speed else "", info=_fields(fields))

        yield advance


@contextmanager
def _plain_lines(description: str, total: int, unit: str, completed: int, out) -> Iterator[Callable[..., None]]:
    """Plain lines: on an update at least `every` seconds after the last line, a heartbeat when `every` seconds
    pass without one (a long first batch, a slow unit: elapsed goes on), and the last line, never a repeat."""
    every, start = progress_every(), time.perf_counter()
    state = {"done": completed, "fields": {}, "last": start, "written": None}
    lock, stop = threading.Lock(), threading.Event()

    def write(final: bool = False) -> None:
        with lock:
            if final and state["written"] == (state["done"], state["fields"]):
                return  # the line just written already says where the loop ended
            now = time.perf_counter()
            elapsed = now - start
            rate = (state["done"] - completed) / elapsed if elapsed > 0 and state["done"] > completed else None
            out.write(progress_line(description, state["done"], total, unit, rate, elapsed, state["fields"]) + "\n")
            out.flush()
            state["last"], state["written"] = now, (state["done"], state["fields"])

    def advance(n: int = 1, **fields) -> None:
        state["done"] += n
        state["fields"] = fields or state["fields"]
        if time.perf_counter() - state["last"] >= every:
            write()

    def heartbeat() -> None:
        while not stop.wait(every - (time.perf_counter() - state["last"]) if every else 1.0):
            if every and time.perf_counter() - state["last"] >= every:
                write()

    beat = threading.Thread(target=heartbeat, name="mdmf-progress-heartbeat", daemon=True)
    if every:
        beat.start()
    try:
        yield advance
    finally:
        stop.set()
        if every:
            beat.join()
        write(final=True)  # the last line: where the loop ended (finished, stopped or failed)
