"""FeatureStore at SSv2-Full size: `load`'s memory peak and time, and the status reads of a rerun with nothing to do.

Synthesises (once, then reuses) a store with SSv2-Full's train split: 67,013 videos, 2 views, T=8, D=1024 float16
(2.05 GiB of features), chunks of 16 videos, 1 % of the videos failed. Then, in one run, each measured the same way:

* `load("train")` as it is (every unit checked against its digests, the kept rows compacted in place) and as it was (`features[:][rows]`): seconds and the
  tracemalloc peak (numpy's allocations are traced) over the features array it returns;
* what a rerun with nothing to do reads (`pending_units`, `progress`, `failures`), each reading the status array
  as before, and with the status read once (`statuses`) and handed on, as extraction and `cache info` now do.

    python benchmarks/store.py [--path /tmp/mdmf-ssv2-size-store] [--videos 67013]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
import zarr

from mdmf.pipeline.features import integrity
from mdmf.pipeline.features.store import FAILED, OK, FeatureStore, SplitLayout

VIEWS, T, D, CHUNK = 2, 8, 1024, 16


def synthesise(path: Path, videos: int) -> FeatureStore:
    if (path / "zarr.json").is_file():
        return FeatureStore.open(path)
    layout = SplitLayout(video_ids=[f"v{i}" for i in range(videos)], paths=[""] * videos,
                         labels=np.arange(videos) % 64, class_names=[f"c{c}" for c in range(64)],
                         prompts=[f"a photo of c{c}" for c in range(64)], views=VIEWS)
    store = FeatureStore.create_or_open(path, meta={"backbone": {"backbone": "synthetic"}},
                                        identity={"dataset": "synthetic-ssv2-full-size"}, layouts={"train": layout},
                                        frames=T, dim=D, chunk_videos=CHUNK)
    group = zarr.open_group(str(path), mode="r+")["train"]
    rng = np.random.default_rng(0)
    block = 4096  # videos per write, a multiple of the chunk
    pattern = rng.normal(size=(block, VIEWS, T, D)).astype(np.float16)
    for start in range(0, videos, block):
        stop = min(start + block, videos)
        group["features"][start:stop] = pattern[: stop - start]
        group["frame_indices"][start:stop] = np.zeros((stop - start, VIEWS, T), np.int32)
    status = np.full(videos, OK, np.int8)
    status[rng.choice(videos, videos // 100, replace=False)] = FAILED
    group["errors"][:] = np.where(status == FAILED, "synthetic failure", "")
    group["status"][:] = status
    store.write_prompt_embeddings("train", rng.normal(size=(64, D)).astype(np.float32))
    # The arrays were written without extraction's per-unit digests: record them as `cache verify --record` does, so
    # `load` checks this store as it checks an extracted one.
    del group[integrity.DIGESTS]
    integrity.record(FeatureStore.open(path, mode="r+"), "train")
    return FeatureStore.open(path)


def traced(fn):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        out = fn()
        return out, time.perf_counter() - t, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def old_load(store: FeatureStore):
    g = store.group("train")
    status = g["status"][:]
    rows = np.flatnonzero(status != FAILED)
    return g["features"][:][rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", default="/tmp/mdmf-ssv2-size-store")
    parser.add_argument("--videos", type=int, default=67_013)
    parser.add_argument("--status-only", action="store_true", help="skip the two load measurements")
    args = parser.parse_args()
    t = time.perf_counter()
    store = synthesise(Path(args.path), args.videos)
    print(f"store {args.path}: {args.videos} train videos ({time.perf_counter() - t:.1f} s to open or synthesise)")

    if not args.status_only:
        measure_load(args.path)
    measure_status(args.path)


def measure_load(path: str) -> None:
    data, seconds, peak = traced(lambda: FeatureStore.open(path).load("train"))
    size = data.features.nbytes
    print(f"load (checked, in place) {seconds:6.1f} s   peak {peak / size:.2f}x the {size / 2**30:.2f} GiB features")
    del data
    feats, seconds, peak = traced(lambda: old_load(FeatureStore.open(path)))
    print(f"load (features[:][rows]) {seconds:6.1f} s   peak {peak / feats.nbytes:.2f}x")
    del feats


def measure_status(path: str) -> None:
    fresh = FeatureStore.open(path)
    t = time.perf_counter()
    fresh.pending_units("train"), fresh.progress(), fresh.failures("train")
    each = time.perf_counter() - t
    fresh = FeatureStore.open(path)
    t = time.perf_counter()
    statuses = fresh.statuses()
    fresh.pending_units("train", status=statuses["train"]), fresh.progress(statuses)
    fresh.failures("train", statuses["train"])
    once = time.perf_counter() - t
    print(f"rerun with nothing to do: pending_units + progress + failures reading the status each {each:.2f} s, "
          f"reading it once {once:.2f} s (ratio {each / once:.2f})")


if __name__ == "__main__":
    main()
