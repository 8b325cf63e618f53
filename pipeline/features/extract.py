"""Stage one: decode videos, sample T frames per view, encode them with CLIP, write a feature store.

Decoding (`mdmf.pipeline.data.decode`: exact frames) and cropping run in DataLoader worker processes (`workers`), one decoder
thread each, while the main process encodes and one writer thread compresses and writes finished units: the three
overlap. Work is done in units of `chunk_videos` videos (one store chunk); a unit is written whole, status last, so an
interrupted run (even `kill -9`) resumes with the same command and ends with the same store.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.isolation import CRASHED, quiet_worker_init, run_alone
from mdmf.pipeline.core.paths import check_writable, file_system_errors
from mdmf.pipeline.core.progress import foreign_logs, progress_bar, progress_note
from mdmf.pipeline.data.datasets import default_root, load_dataset
from mdmf.pipeline.data.sampling import view_rng
from mdmf.pipeline.data.splits import prompt_for, resolve_video
from mdmf.pipeline.data.transforms import FramePreprocessor
from mdmf.pipeline.data.views import FAILED, decode_views
from mdmf.pipeline.features import integrity
from mdmf.pipeline.features.backbones import Backbone, load_backbone, resolve_backbone
from mdmf.pipeline.features.recipe import ExtractConfig
from mdmf.pipeline.features.store import FeatureStore, SplitLayout, is_store

SPLITS = ("train", "val", "test")
@dataclass
class ExtractSummary:
    store: str
    seconds: float
    videos_done: int
    per_split: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    # Where the main process spent this run's time, in seconds (see `ExtractTimes`); empty when nothing was to do.
    times: dict = field(default_factory=dict)
    # Finished units found damaged (missing, truncated or altered chunks) and redone by this run, per split.
    redone_damaged: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ExtractTimes:
    """Seconds of one run. The main process waits for decoded videos, encodes them, and hands finished units to the
    writer thread, waiting for it only when two units are already queued; `writing` is the writer thread's own time
    (overlapped with the rest). Waiting for decoding most of the time means decode-bound (more `--workers` helps);
    encoding most of the time means encoder-bound, the pipeline's best case."""

    waiting_for_decode: float = 0.0
    encoding: float = 0.0
    writing: float = 0.0
    waiting_for_writer: float = 0.0


@dataclass(frozen=True)
class DecodeJob:
    split: str
    unit: int
    row: int
    video_id: str
    path: str
    train: bool


class DecodeDataset(Dataset):
    """Decodes and crops one video's views; runs inside DataLoader workers."""

    def __init__(self, jobs: list[DecodeJob], frames: int, views: dict[str, int], pre: FramePreprocessor, seed: int,
                 allow_flip: bool, sampling: str = "tsn"):
        self.jobs, self.frames, self.views, self.pre, self.seed, self.allow_flip = jobs, frames, views, pre, seed, allow_flip
        self.sampling = sampling

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> dict:
        job = self.jobs[i]
        rngs = [view_rng(self.seed, job.split, job.video_id, v) if job.train else None
                for v in range(self.views[job.split])]
        return {"i": i, **decode_views(job.path, self.frames, self.pre, rngs, self.allow_flip, sampling=self.sampling)}


def prepare_store(cfg: ExtractConfig, backbone: Backbone, dataset) -> FeatureStore:
    """Create (or open and check) the store for `cfg`; fills the prompt embeddings of every split."""
    # Absolute: the store's video paths (and its recorded root) stay right whatever the folder a later command runs in.
    # Normalised too (`work/../data` is recorded as `/…/data`): the paths are read by people, in `cache info`.
    root = Path(os.path.abspath(Path(cfg.root) if cfg.root else default_root(cfg.dataset)))
    layouts = {}
    for split in cfg.splits:
        entries = dataset.entries[split]
        layouts[split] = SplitLayout(
            video_ids=[e.video_id for e in entries],
            paths=[str(resolve_video(root, e, dataset.info) or "") for e in entries],
            labels=np.asarray([e.label for e in entries], dtype=np.int32),
            class_names=list(dataset.classes[split]),
            prompts=[prompt_for(c, cfg.prompt_template) for c in dataset.classes[split]],
            views=cfg.train_views if split == "train" else 1,
        )
    meta = {
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("workers", "batch_frames", "device", "shard", "progress")}
        | {"root": str(root), "splits_dir": os.path.abspath(cfg.splits_dir) if cfg.splits_dir else None},
        "backbone": backbone.describe(),
        "versions": _versions(),
    }
    store = FeatureStore.create_or_open(
        cfg.store_path(), meta=meta, identity=cfg.identity(backbone, cfg.allow_flip(dataset.info.flip)), layouts=layouts,
        frames=cfg.frames, dim=backbone.dim, chunk_videos=cfg.chunk_videos,
        image_size=backbone.image_size if cfg.save_frames else None,
    )
    for split in cfg.splits:
        if not store.has_prompt_embeddings(split):
            prompts = store.strings(split, "prompts")
            store.write_prompt_embeddings(split, backbone.encode_text(prompts).numpy())
    return store


def run_extract(cfg: ExtractConfig, backbone: Backbone | None = None, dataset=None) -> ExtractSummary:
    """Run (or resume) stage one for `cfg`; returns a summary (also written as `<store>/summary.json`)."""
    if cfg.frames < 1 or cfg.train_views < 1 or cfg.chunk_videos < 1:
        raise MdmfError("--frames, --train-views and --chunk-videos must be positive")
    shard, num_shards = cfg.shard
    if not 0 <= shard < num_shards:
        raise MdmfError(f"--shard {shard}/{num_shards}: the shard index must be in 0..{num_shards - 1}")
    out = cfg.store_path()  # a URL --out is refused here, before anything is generated, loaded or created
    # so is one on a read-only disk or below a file (a file at --out itself: `create_or_open` says it is not a store)
    check_writable(out if not out.is_file() else out.parent, "--out", shown=out)
    cfg = _keep_saved_frames(cfg, out)
    dataset = dataset or load_dataset(cfg.dataset, cfg.root, cfg.splits_dir, progress=cfg.progress)
    note = dataset.info.defaults_note(dataset.path)
    if note and cfg.progress:
        progress_note(note)
    if cfg.splits is None:  # not asked for: the splits the dataset has (a folder with only test.txt extracts test)
        cfg = replace(cfg, splits=tuple(s for s in SPLITS if s in dataset.entries))
    for split in cfg.splits:
        if split not in dataset.entries:
            raise MdmfError(f"dataset {cfg.dataset} has no split {split!r} (it has {', '.join(dataset.entries)})")
    device = resolve_device(cfg.device)
    if backbone is None:
        if cfg.progress:  # building a large model (and its first batch) can take minutes: say what is happening
            progress_note(f"loading the model {cfg.resolved_backbone()} (weights {cfg.weights}) on {device}", None)
        with foreign_logs(show=cfg.progress):
            backbone = load_backbone(resolve_backbone(cfg.resolved_backbone(), cfg.weights), device=device)
    backbone.model.to(device)
    start = time.perf_counter()
    # A unit's status chunk is written last and every chunk file is replaced atomically, so a unit whose write failed
    # (a full disk) is still pending: the finished ones are kept.
    with file_system_errors(out, "the units finished so far are kept and the store is resumable: free space (or fix "
                                 "the folder) and run the same command again"):
        return _extract_into_store(cfg, backbone, dataset, device, start)


def _keep_saved_frames(cfg: ExtractConfig, out: Path) -> ExtractConfig:
    """A store made with --save-frames, run again without it: the same store (its finished features are reused, its
    remaining units get their frames too, so the frame store stays whole), said once. The other way round, frames
    asked of a store made without them, stays an identity mismatch: its finished units have no frames."""
    if cfg.save_frames or not is_store(out):
        return cfg
    try:
        made_with = bool(FeatureStore.open(out).meta.identity.get("save_frames"))
    except MdmfError:
        return cfg  # not a readable store: prepare_store says what is wrong with it
    if made_with and cfg.progress:
        progress_note(f"{out} was made with --save-frames: continuing it as it was (the finished features are "
                      "reused; the remaining videos get their frames too)")
    return replace(cfg, save_frames=True) if made_with else cfg


def _extract_into_store(cfg: ExtractConfig, backbone: Backbone, dataset, device, start: float) -> ExtractSummary:
    shard, num_shards = cfg.shard
    store = prepare_store(cfg, backbone, dataset)
    # A damaged finished unit (bad copy, full disk, edited chunk) is pending again: this run redoes exactly those.
    redone = integrity.repair(store, cfg.splits, shard, num_shards)

    jobs: list[DecodeJob] = []
    paths = {s: store.strings(s, "paths") for s in cfg.splits}
    ids = {s: store.strings(s, "video_ids") for s in cfg.splits}
    statuses = store.statuses()  # read once: the pending units now, and the summary too when nothing is to do
    for split in cfg.splits:
        for unit in store.pending_units(split, shard, num_shards, statuses[split]):
            for row in store.unit_rows(split, unit):
                jobs.append(DecodeJob(split, unit, row, ids[split][row], paths[split][row], split == "train"))

    pre = cfg.preprocessor(backbone.image_size, backbone.mean, backbone.std, backbone.interpolation)
    views = {s: store.views(s) for s in cfg.splits}
    times = ExtractTimes()
    done = _encode_jobs(cfg, store, backbone, pre, jobs, views, cfg.allow_flip(dataset.info.flip), device, times)
    if done:
        statuses = store.statuses()  # after this run's units (and what other shards wrote meanwhile)
    summary = ExtractSummary(store=str(store.path), seconds=round(time.perf_counter() - start, 2), videos_done=done,
                             per_split=store.progress(statuses),
                             failures={s: store.failures(s, statuses[s])[:20] for s in store.splits},
                             times={k: round(v, 3) for k, v in asdict(times).items()} if done else {},
                             redone_damaged=redone)
    if num_shards == 1 or all(v["pending"] == 0 for v in summary.per_split.values()):
        (store.path / "summary.json").write_text(json.dumps(summary.to_json(), indent=2))
    return summary


def _encode_jobs(cfg, store, backbone, pre, jobs, views, allow_flip, device, times: ExtractTimes) -> int:
    """Decode in workers, encode here, write unit by unit in a writer thread. Returns the number of videos processed.

    Units are written in order by one thread, at most two queued: compressing and writing a unit (tens of MB with
    `save_frames`) overlaps the encoding of the next, and the store on disk is the same as with writing inline.
    """
    if not jobs:
        return 0
    dataset = DecodeDataset(jobs, cfg.frames, views, pre, cfg.seed, allow_flip, cfg.frame_sampling)
    last_row = {(j.split, j.unit): store.unit_rows(j.split, j.unit).stop - 1 for j in jobs}
    pending: list[dict] = []
    queued: deque = deque()  # futures of the units handed to the writer, oldest first
    failed = threading.Event()

    def write(unit: EncodedUnit) -> None:
        if failed.is_set():  # after a failed write, no later unit is written: the store stays a prefix of the run
            return
        t = time.perf_counter()
        try:
            unit.write(store)
        except BaseException:
            failed.set()
            raise
        times.writing += time.perf_counter() - t

    def wait_for_writer(keep: int) -> None:
        t = time.perf_counter()
        while len(queued) > keep:
            queued.popleft().result()  # re-raises a failed write here
        times.waiting_for_writer += time.perf_counter() - t

    # On an error or Ctrl-C the executor's exit still finishes the units already handed to it: work done is kept.
    # `closing`: on an error the decoding thread is stopped and joined here, before the error leaves; left to the
    # garbage collector (the traceback keeps the generator alive) it could still be inside a decoder at interpreter
    # exit, which aborts the process ("terminate called without an active exception", seen on a full disk).
    with progress_bar(cfg.progress, "extract", total=len(jobs), unit="videos") as advance, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdmf-store-writer") as writer, \
            closing(_in_thread(lambda: _decoded(dataset, cfg, device), maxsize=cfg.chunk_videos)) as items:
        while True:
            t = time.perf_counter()
            item = next(items, None)
            times.waiting_for_decode += time.perf_counter() - t
            if item is None:
                break
            item["job"] = job = jobs[item["i"]]
            pending.append(item)
            if job.row == last_row[job.split, job.unit]:  # the unit is complete (the loader keeps the order)
                t = time.perf_counter()
                unit = _encode_unit(backbone, pre, pending, views[job.split], cfg, device, advance)
                times.encoding += time.perf_counter() - t
                wait_for_writer(keep=1)
                queued.append(writer.submit(write, unit))
                advance(len(pending) - len(unit.decoded))  # the failed ones; _encode_unit counted the encoded ones
                pending = []
        wait_for_writer(keep=0)
    return len(jobs)


_END = object()


def _in_thread(make_items, maxsize: int):
    """Iterate `make_items()` in a background thread, yielding its items here.

    The DataLoader is driven from that thread on purpose: in the main thread it installs a SIGCHLD handler that
    raises a dead worker's error wherever the main thread happens to be (mid-encode, mid-write); from another thread
    the death is reported by the loader itself, where `_decoded` can deal with it.
    """
    out: queue.Queue = queue.Queue(maxsize)
    stop = threading.Event()

    def put(item) -> bool:
        """Hand `item` over; False once the consumer has gone (then the loader and its workers are let go)."""
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        try:
            for item in make_items():
                if not put(item):
                    return
            put(_END)
        except BaseException as err:  # handed to the consumer, raised there
            put(err)

    feeder = threading.Thread(target=feed, name="mdmf-decoded-videos", daemon=True)
    feeder.start()
    try:
        while (item := out.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Let the feeder finish the video it is on and close the loader before this returns or raises: a daemon
        # thread killed inside a decoder at interpreter exit aborts the process ("terminate called ...").
        stop.set()
        feeder.join()


def _decoded(dataset: DecodeDataset, cfg: ExtractConfig, device: torch.device):
    """The decoded items of `dataset`, in order, from `cfg.workers` DataLoader worker processes.

    A decoder can abort the process that opens some damaged files (decord did). When a worker dies, the videos that
    were in flight are decoded again one at a time, each in a process of its own: the one that dies is yielded as
    failed (reason `CRASHED`), the others as decoded, and the loader restarts after them. (With `workers=0` decoding
    runs in this process and such a file ends the run; rerunning resumes at its unit.)
    """
    prefetch = prefetch_factor(cfg.workers, cfg.chunk_videos)
    start, in_flight = 0, max(1, cfg.workers) * (prefetch or 1)
    while start < len(dataset):
        loader = DataLoader(
            Subset(dataset, range(start, len(dataset))), batch_size=None, shuffle=False, num_workers=cfg.workers,
            worker_init_fn=quiet_worker_init, prefetch_factor=prefetch,
            persistent_workers=False,
            # To a GPU: a loader thread copies each decoded video into pinned memory as it arrives (reading the
            # workers' shared memory for the first time is slow: up to 0.1 s per unit measured on a CPU), so the main
            # thread's copies to the device are asynchronous and that first read is off its path.
            pin_memory=device.type == "cuda",
        )
        received = start
        try:
            for item in loader:
                received = item["i"] + 1
                yield item
            return
        except (RuntimeError, ConnectionError, EOFError) as err:
            # A dead worker shows as the loader's RuntimeError, or, when it died right after queueing a video, as a
            # broken connection while that video's shared memory is fetched from it.
            if cfg.workers == 0 or (isinstance(err, RuntimeError) and "DataLoader worker" not in str(err)):
                raise
        del loader
        start = len(dataset)
        for i in range(received, min(len(dataset), received + in_flight)):
            item = _decode_alone(dataset, i)
            yield item
            if item["error"] == CRASHED:
                start = i + 1
                break
        else:  # nothing crashed on its own (a crash that does not repeat): go on after those
            start = min(len(dataset), received + in_flight)


def _decode_alone(dataset: DecodeDataset, i: int) -> dict:
    """`dataset[i]` decoded in a process of its own; a process that dies gives a failed item."""
    survived, item = run_alone(dataset.__getitem__, i, initializer=quiet_worker_init, initargs=(0,))
    if survived:
        return item
    job = dataset.jobs[i]
    return {"i": i, "status": FAILED, "error": CRASHED, "crops": None,
            "indices": np.full((dataset.views[job.split], dataset.frames), -1, np.int32)}


def prefetch_factor(workers: int, chunk_videos: int) -> int | None:
    """Videos each worker may decode ahead: together two units' worth (at least 4 each). The main process encodes a
    whole unit at once; with less in flight than a unit, the workers stop while it encodes and decoding and
    encoding take turns instead of overlapping (measured: 1 worker, prefetch 4, units of 16 on 2 cores spent as
    long waiting for videos as encoding them)."""
    return max(4, -(-2 * chunk_videos // workers)) if workers > 0 else None


@dataclass
class EncodedUnit:
    """One unit of `n` videos, encoded and ready to write: where it goes, its arrays, and (with `save_frames`) the
    uint8 crops of the videos that decoded."""

    split: str
    unit: int
    features: np.ndarray  # (n, K, T, D) float16
    indices: np.ndarray  # (n, K, T) int32 frame indices (-1: not decoded)
    status: np.ndarray  # (n,) int8 view status codes
    errors: list[str]  # (n,) reasons, "" when fine
    decoded: list[int]  # rows of the videos that decoded
    crops: list[torch.Tensor] | None  # for those rows, (K, T, 3, S, S) uint8 each; None without save_frames
    image_size: int  # S

    def write(self, store) -> None:
        """Into `store`; the crops laid out `(n, K, T, S, S, 3)`."""
        frames = None
        if self.crops:
            frames = np.zeros((len(self.status), *self.crops[0].shape[:2], self.image_size, self.image_size, 3),
                              np.uint8)
            frames[self.decoded] = torch.stack(self.crops).permute(0, 1, 2, 4, 5, 3).numpy()
        store.write_unit(self.split, self.unit, self.features, self.indices, self.status, self.errors, frames)


@torch.no_grad()
def _encode_unit(backbone, pre, items, k, cfg, device, advance=lambda n=1: None) -> EncodedUnit:
    """Encode one unit's decoded videos (items of `DecodeDataset`, in row order, each with its "job"); `advance(n)`
    is told of each video whose frames are encoded, so a long unit shows its rate and ETA as it goes."""
    split, unit = items[0]["job"].split, items[0]["job"].unit
    n, t, d = len(items), cfg.frames, backbone.dim
    feats = np.zeros((n, k, t, d), np.float16)
    indices = np.stack([it["indices"] for it in items])
    status = np.asarray([it["status"] for it in items], np.int8)
    ok = [i for i, it in enumerate(items) if it["crops"] is not None]
    videos = [items[i]["crops"] for i in ok]  # each (K, T, 3, S, S) uint8
    if ok:
        # On a GPU each video goes over the bus as uint8 (from pinned memory: asynchronous) and is stacked there.
        crops = torch.stack([v.to(device, non_blocking=True) for v in videos])  # (n_ok, K, T, 3, S, S)
        flat = crops.reshape(-1, *crops.shape[-3:])
        out, told, per_video = [], 0, k * t
        for b in range(0, flat.shape[0], cfg.batch_frames):  # fixed batches: a resumed unit gives the same numbers
            out.append(backbone.encode_images(pre.normalize(flat[b : b + cfg.batch_frames])).float().cpu())
            finished = min(flat.shape[0], b + cfg.batch_frames) // per_video
            if finished > told:
                advance(finished - told)
                told = finished
        feats[ok] = torch.cat(out).reshape(len(ok), k, t, d).numpy().astype(np.float16)
    return EncodedUnit(split, unit, feats, indices, status, [it["error"] for it in items], ok,
                       videos if cfg.save_frames else None, pre.image_size)


def _versions() -> dict:
    out = {}
    for pkg in ("mdmf", "torch", "open_clip_torch", "av", "decord", "zarr", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out
