"""`mdmf check-data`: are the videos a splits folder lists on disk, and can extraction's reader read them?

Each listed video is looked up with `resolve_video` and, when found, opened with the reader extraction uses
(`mdmf.pipeline.data.decode.open_video`: the whole stream is decoded, the frame count is what decodes) and its first, middle and
last frames are read, so a file that check-data passes is one extraction can decode, and the reasons recorded for a bad
file are the ones extraction records. Videos are checked in worker processes, each
opening one video at a time as extraction's workers do: a decoder can abort the whole process on a damaged file (seen
once with decord in this project's test suite, when videos were opened from two threads of one process), and a crashed
worker only costs that one video, recorded as unreadable. Results are kept in list order, so the examples are the first
ones of each split.
"""

from __future__ import annotations

import faulthandler
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from mdmf.pipeline.core import isolation
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.isolation import CRASHED
from mdmf.pipeline.core.limits import COUNT, check_ranges
from mdmf.pipeline.core.progress import progress_bar
from mdmf.pipeline.data.decode import VideoReadError, clean_reason, open_video, read_frames
from mdmf.pipeline.data.splits import DatasetInfo, DatasetSplits, SplitEntry, expected_location, resolve_video

FOUND, MISSING, UNREADABLE = "found", "missing", "unreadable"


@dataclass
class SplitCheck:
    """Counts for one split; `found` = listed − missing (files present), `readable` = found − unreadable."""

    split: str
    listed: int = 0
    missing: int = 0
    unreadable: int = 0
    frames: list[int] = field(default_factory=list, repr=False)  # frame counts of the readable videos
    found_examples: list[str] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)  # where the video was expected
    unreadable_examples: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def found(self) -> int:
        return self.listed - self.missing

    @property
    def readable(self) -> int:
        return self.found - self.unreadable

    def to_json(self) -> dict:
        return {
            "listed": self.listed, "found": self.found, "missing": self.missing, "unreadable": self.unreadable,
            "readable": self.readable,
            "frames_min": min(self.frames) if self.frames else None,
            "frames_median": statistics.median(self.frames) if self.frames else None,
            "found_examples": self.found_examples, "missing_examples": self.missing_examples,
            "unreadable_examples": [{"path": p, "reason": r} for p, r in self.unreadable_examples],
        }


@dataclass
class CheckReport:
    """What `check_data` found, per split; `ok` is False when any listed video is missing or unreadable."""

    dataset: str
    root: str
    splits_dir: str
    splits: dict[str, SplitCheck]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.missing == 0 and s.unreadable == 0 for s in self.splits.values())

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "root": self.root, "splits_dir": self.splits_dir, "ok": self.ok,
                "seconds": self.seconds, "splits": {name: s.to_json() for name, s in self.splits.items()}}

def probe_video(path: Path) -> tuple[int | None, str]:
    """(frame count, "") for a video extraction's reader can read, else (None, reason). Never raises for a bad
    file."""
    try:
        video = open_video(path)
        n = len(video)
        read_frames(video, sorted({0, n // 2, n - 1}))
        return n, ""
    except VideoReadError as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - any failure of one file is that file's problem, not the run's
        text = str(err).strip().splitlines()
        return None, clean_reason(f"{type(err).__name__}: {text[0] if text else ''}")


def _check_one(root: Path, entry: SplitEntry, info: DatasetInfo) -> tuple[str, str, int | None, str]:
    path = resolve_video(root, entry, info)
    if path is None:
        return MISSING, expected_location(root, entry, info), None, ""
    frames, reason = probe_video(path)
    return (FOUND if frames is not None else UNREADABLE), str(path), frames, reason


def check_data(splits: DatasetSplits, root: Path, workers: int = 2, progress: bool = True,
               split_names: Sequence[str] | None = None, examples: int = 5) -> CheckReport:
    """Look up and open every video of `splits` (or only of `split_names`) under `root`.

    Raises `MdmfError` when `root` is not a folder or a requested split does not exist; bad videos are counted and
    reported, never raised. `examples` = how many paths of each kind are kept per split.
    """
    root = Path(root)
    if not root.is_dir():
        raise MdmfError(f"--root {root}: no such folder; point it at the folder that holds the {splits.name} videos")
    check_ranges({"workers": workers}, {"workers": COUNT})
    names = list(split_names) if split_names else list(splits.entries)
    for name in names:
        if name not in splits.entries:
            raise MdmfError(f"{splits.path} has no split {name!r} (it has {', '.join(splits.entries)})")
    jobs = [(name, entry) for name in names for entry in splits.entries[name]]
    report = CheckReport(splits.name, str(root), str(splits.path), {name: SplitCheck(name) for name in names})
    start = time.perf_counter()
    with progress_bar(progress, f"checking {splits.name}", len(jobs), "videos") as advance:
        results = _check_all(root, [entry for _, entry in jobs], splits.info, workers, advance)
    for (name, _), (kind, path, frames, reason) in zip(jobs, results):
        s = report.splits[name]
        s.listed += 1
        if kind == MISSING:
            s.missing += 1
            _keep(s.missing_examples, path, examples)
        elif kind == UNREADABLE:
            s.unreadable += 1
            _keep(s.unreadable_examples, (path, reason), examples)
        else:
            s.frames.append(frames)
            _keep(s.found_examples, path, examples)
    report.seconds = round(time.perf_counter() - start, 2)
    return report


def _check_all(root: Path, entries: list[SplitEntry], info: DatasetInfo, workers: int, advance) -> list[tuple]:
    """`_check_one` of every entry, in order, in `workers` processes. When a worker dies, the videos it may have been
    on are checked again one at a time, each in a process of its own, so the one that kills it is found and recorded
    as unreadable; the rest go on in parallel."""
    results: list[tuple | None] = [None] * len(entries)
    todo = list(range(len(entries)))
    while todo:
        broken = False
        with isolation.pool(workers, _quiet_worker) as parallel:
            futures = {parallel.submit(_check_one, root, entries[i], info): i for i in todo}
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                    advance(1)
                except BrokenProcessPool:
                    broken = True
        if not broken:
            break
        # tasks start in order: the one that crashed is among the first unfinished ones
        for i in [i for i in todo if results[i] is None][: workers + 1]:
            survived, result = isolation.run_alone(_check_one, root, entries[i], info, initializer=_quiet_worker)
            results[i] = result if survived else (UNREADABLE, str(resolve_video(root, entries[i], info)), None,
                                                  CRASHED)
            advance(1)
        todo = [i for i in todo if results[i] is None]
    return results


def _quiet_worker() -> None:
    """A worker that a decoder kills is expected and handled: no fatal-error dump of it on the terminal."""
    faulthandler.disable()


def _keep(items: list, item, limit: int) -> None:
    if len(items) < limit:
        items.append(item)
