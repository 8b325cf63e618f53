"""Experiment tracking: `mdmf train --log csv|tensorboard|wandb` (repeatable), beside `metrics.jsonl`.

`metrics.jsonl` stays the run's record (the report and `--resume` read it); a tracker receives the same rows, as they
are written, and sends each row's scalars (every numeric field but `step`) somewhere a user looks at curves:

* `csv`: `train.csv` and `val.csv` in the run folder, one column per scalar, `step` first, then the fields in the
  order of the first row (a field that appears later adds a column: the file is rewritten with the wider header).
  Values are written as Python writes them (`repr`), so they read back exactly as `metrics.jsonl` holds them.
  Needs nothing.
* `tensorboard`: event files in `<run>/tensorboard/`, tags `train/<field>` and `val/<field>` (the field names of
  `metrics.jsonl` without a repeated prefix: `val/accuracy`, `val/ci95`, `train/accuracy`), the optimizer step as TensorBoard's step. Needs the `tensorboard` package (the extra
  `mdmf[tensorboard]`); TensorBoard keeps scalars as float32.
* `wandb`: a Weights & Biases run named after the run folder, in project `$WANDB_PROJECT` (default `mdmf`), its
  files under `<run>/wandb/`, with the training config as its config and the same `train/…` and `val/…` keys.
  `WANDB_MODE=offline` works without a network (`wandb sync` later). Needs `wandb` (the extra `mdmf[wandb]`).

Resume: a tracker starts from `metrics.jsonl` as `--resume` left it (rows after `last.pt`'s step already dropped).
The CSV files are rewritten from it, so they never hold a step twice; TensorBoard, when the folder already has event
files, is opened with `purge_step` = the next step, which hides the events a crash left past the checkpoint, and
otherwise gets the earlier rows first; a W&B run keeps its id in `<run>/wandb-id` and is resumed with it (W&B
ignores steps it already has). Which trackers run is a setting of the command, like `--quiet`: give `--log` again
with `--resume`; a tracker added on resume still gets the whole run. Only rank 0 of a `torchrun` run logs; there the
option must be spelt `--tracker` (the same option), since torchrun's own parser takes `--log` for an abbreviation of
its `--log-dir` and refuses the command.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import secrets
from pathlib import Path

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.runs import RunDir, read_curves

TRACKERS = ("csv", "tensorboard", "wandb")
# tracker -> (the module it imports, the package to install, mdmf's extra that installs it)
NEEDS = {"tensorboard": ("tensorboard", "tensorboard", "tensorboard"), "wandb": ("wandb", "wandb", "wandb")}
KINDS = ("train", "val")


def tracker_names(names) -> tuple[str, ...]:
    """`--log` values, checked and without repeats (order kept); `csv,tensorboard` counts as two."""
    out: list[str] = []
    for value in names or ():
        for name in str(value).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in TRACKERS:
                raise MdmfError(f"--log {name}: unknown tracker; use {', '.join(TRACKERS)} (repeat --log for several)")
            if name not in out:
                out.append(name)
    return tuple(out)


def check_trackers(names) -> tuple[str, ...]:
    """The trackers, each importable: a missing package is one line saying what to install (before any run starts)."""
    names = tracker_names(names)
    for name in names:
        if name in NEEDS:
            module, package, extra = NEEDS[name]
            try:
                importlib.import_module(module)
            except ImportError:
                raise MdmfError(f"--log {name} needs the {package} package, which is not installed: "
                                f"pip install 'mdmf[{extra}]' (or pip install {package})") from None
    return names


def tag(kind: str, key: str) -> str:
    """The tracker's name of a `metrics.jsonl` field: `val/accuracy` for `val_accuracy` (not `val/val_accuracy`)."""
    return f"{kind}/{key.removeprefix(kind + '_')}"


def scalars(record: dict) -> dict[str, float]:
    """The fields of a metrics row a tracker plots: numbers (not bools), `step` aside."""
    return {k: v for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class CsvTracker:
    """`train.csv` and `val.csv` in the run folder (see the module docstring)."""

    def __init__(self, run: RunDir):
        self.paths = {kind: run.path / f"{kind}.csv" for kind in KINDS}
        self.headers: dict[str, list[str]] = {}
        curves = read_curves(run.metrics) if run.metrics.is_file() else None
        for kind in KINDS:  # the files are metrics.jsonl's rows so far: a resumed run never holds a step twice
            rows = getattr(curves, kind) if curves is not None else []
            self.headers[kind] = self._header(rows)
            self._write(kind, rows)

    @staticmethod
    def _header(rows: list[dict], header: list[str] | None = None) -> list[str]:
        header = list(header or ["step"])
        for row in rows:
            header += [k for k in row if k not in header]
        return header

    def _write(self, kind: str, rows: list[dict]) -> None:
        path = self.paths[kind]
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.headers[kind], restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)

    def log(self, kind: str, record: dict) -> None:
        header = self.headers[kind]
        if any(k not in header for k in record):  # a new field: rewrite the file with one column more
            with open(self.paths[kind], newline="") as f:
                rows = list(csv.DictReader(f))
            self.headers[kind] = self._header([record], header)
            self._write(kind, rows)
            header = self.headers[kind]
        with open(self.paths[kind], "a", newline="") as f:
            csv.DictWriter(f, header, restval="", lineterminator="\n").writerow(record)

    def close(self) -> None:
        pass


def _earlier_rows(run: RunDir) -> list[tuple[str, dict]]:
    """metrics.jsonl's rows so far as (kind, row), in step order (train before val at the same step)."""
    if not run.metrics.is_file():
        return []
    curves = read_curves(run.metrics)
    rows = [("train", r) for r in curves.train] + [("val", r) for r in curves.val]
    return sorted(rows, key=lambda kr: (kr[1].get("step", 0), KINDS.index(kr[0])))


class TensorBoardTracker:
    """Event files in `<run>/tensorboard/` (torch's SummaryWriter)."""

    def __init__(self, run: RunDir):
        from torch.utils.tensorboard import SummaryWriter

        logdir = run.path / "tensorboard"
        earlier = _earlier_rows(run)
        existing = logdir.is_dir() and any(logdir.glob("events.out.tfevents.*"))
        last_step = max((r.get("step", 0) for _, r in earlier), default=0)
        self.writer = SummaryWriter(str(logdir), purge_step=last_step + 1 if existing else None, flush_secs=30)
        if not existing:  # a new run, or tensorboard added on --resume: the earlier rows first
            for kind, row in earlier:
                self.log(kind, row)

    def log(self, kind: str, record: dict) -> None:
        step = int(record.get("step", 0))
        for key, value in scalars(record).items():
            self.writer.add_scalar(tag(kind, key), value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run (see the module docstring); `WANDB_MODE=offline` needs no network."""

    def __init__(self, run: RunDir, config: dict):
        import wandb

        id_file = run.path / "wandb-id"
        new = not id_file.is_file()
        if new:
            id_file.write_text(secrets.token_hex(4) + "\n")  # the W&B run id (8 characters), kept for --resume
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "mdmf"), name=run.name,
                                  id=id_file.read_text().strip(), resume="allow", dir=str(run.path), config=config,
                                  settings=wandb.Settings(console="off"))
        except Exception as err:  # no network, no login, ...: say so in one line; metrics.jsonl is still written
            raise MdmfError(f"--log wandb: W&B could not start ({type(err).__name__}: {str(err).splitlines()[0]}); "
                            "log in with `wandb login`, or set WANDB_MODE=offline to log without a network") from None
        if new:
            for kind, row in _earlier_rows(run):
                self.log(kind, row)

    def log(self, kind: str, record: dict) -> None:
        values = {tag(kind, k): v for k, v in scalars(record).items() if math.isfinite(v)}
        self.run.log(values, step=int(record.get("step", 0)))

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """The trackers of a run, as one: `log(kind, row)` to each; a context manager that closes them."""

    def __init__(self, trackers: list | None = None):
        self.trackers = list(trackers or [])

    def log(self, kind: str, record: dict) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: use one of {KINDS}")
        for tracker in self.trackers:
            tracker.log(kind, record)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_trackers(names, run: RunDir | str | Path, config: dict | None = None) -> Trackers:
    """The trackers `names` for a run folder whose metrics.jsonl is as training continues from it."""
    run = RunDir.of(run)
    out = Trackers()
    try:
        for name in check_trackers(names):
            if name == "csv":
                out.trackers.append(CsvTracker(run))
            elif name == "tensorboard":
                out.trackers.append(TensorBoardTracker(run))
            else:
                out.trackers.append(WandbTracker(run, config or {}))
    except BaseException:
        out.close()
        raise
    return out
