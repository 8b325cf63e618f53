"""What the integrity check costs when a split is loaded (`FeatureStore.load`, `features/integrity.py`), measured in
one run on a synthetic store of UCF101's size.

The store: UCF101's few-shot splits (train 9,154 videos × 2 views, val 1,421, test 2,745), T = 8, D = 1024 (RN50),
units of 16 videos, random float16 features, every video ok, written through `FeatureStore.write_unit` (so with its
digests). Timed per split, the two interleaved, `--repeats` times, the fastest counts (on a shared machine, the closest
to an unloaded one), wall time and CPU time of the process apart (on a loaded machine the CPU time moves less):

* `load`: `FeatureStore.open(path).load(split)` as it is: the arrays read whole, every finished unit's CRC32C of
  features, frame indices and status compared with its digests;
* `load, no check`: the same with the check replaced by reading the same arrays whole (what `load` did before).

Differences of two loads move with the machine's load by more than the check costs, so the check's own work is also
timed alone, deterministic CPU work: `check_split` with the arrays served from memory (every unit's CRC32C, reading the
`digests` array, comparing), as a share of `load, no check`; and reading the `digests` array alone. The store is read
right after it is written (page cache warm): the check's share is largest there; from a cold disk the read grows and
the check's share shrinks.

    python benchmarks/store_integrity.py --json bench-integrity.json   # 2 cores: about 2 minutes, 0.4 GB on disk
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from mdmf.pipeline.features import integrity
from mdmf.pipeline.features.store import OK, FeatureStore, SplitLayout

UCF101 = {"train": (9154, 2), "val": (1421, 1), "test": (2745, 1)}  # videos, views (splits/ucf101)


def synthesize(path: Path, frames: int = 8, dim: int = 1024, chunk: int = 16, scale: float = 1.0) -> FeatureStore:
    rng = np.random.default_rng(0)
    layouts = {}
    for split, (n, views) in UCF101.items():
        n = max(chunk, int(n * scale))
        layouts[split] = SplitLayout(video_ids=[f"{split}{i}" for i in range(n)], paths=[""] * n,
                                     labels=np.arange(n) % 10, class_names=[f"c{c}" for c in range(10)],
                                     prompts=[f"a photo of c{c}" for c in range(10)], views=views)
    store = FeatureStore.create_or_open(path, meta={"backbone": {"backbone": "synthetic"}},
                                        identity={"dataset": "synthetic"}, layouts=layouts, frames=frames, dim=dim,
                                        chunk_videos=chunk)
    for split, lay in layouts.items():
        for unit in range(store.num_units(split)):
            rows = store.unit_rows(split, unit)
            k = len(rows)
            feats = rng.standard_normal((k, lay.views, frames, dim), dtype=np.float32).astype(np.float16)
            store.write_unit(split, unit, feats, np.tile(np.arange(frames), (k, lay.views, 1)), np.full(k, OK),
                             [""] * k)
        store.write_prompt_embeddings(split, rng.standard_normal((10, dim)).astype(np.float32))
    return store


def _read_only(store, split, names=None):
    """The check switched off: the same arrays read whole, nothing compared."""
    names = tuple(names or integrity.ON_LOAD)
    return {n: store.array(split, n)[:] for n in names}, []


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all its threads: zarr reads in a thread pool)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def measure(path: Path, repeats: int) -> dict:
    out = {}
    for split in UCF101:
        times = {"load": [], "load, no check": []}
        for r in range(repeats):
            for name in (list(times) if r % 2 == 0 else list(times)[::-1]):
                if name == "load":
                    times[name].append(_timed(lambda: FeatureStore.open(path).load(split)))
                else:
                    with mock.patch.object(integrity, "check_split", _read_only):
                        times[name].append(_timed(lambda: FeatureStore.open(path).load(split)))
        store = FeatureStore.open(path)
        arrays, _ = _read_only(store, split)
        held = {name: (arrays[name], set()) for name in arrays}

        def check_work():
            """check_split with the arrays served from memory: the work the check adds to reading them (the
            CRC32C of every unit's slices, reading the digests, comparing)."""
            with mock.patch.object(integrity, "_read", lambda store, split, name: held[name]):
                assert not integrity.check_split(store, split, integrity.ON_LOAD)[1]

        wall = {k: min(t[0] for t in v) for k, v in times.items()}
        cpu = {k: min(t[1] for t in v) for k, v in times.items()}
        work = [_timed(check_work) for _ in range(repeats)]
        work_wall, work_cpu = min(t[0] for t in work), min(t[1] for t in work)
        out[split] = {
            "videos": int(arrays["status"].shape[0]),
            "features_mb": round(arrays["features"].nbytes / 1e6, 1),
            **{f"{k} s": round(v, 3) for k, v in wall.items()},
            **{f"{k} cpu s": round(v, 3) for k, v in cpu.items()},
            "check work s": round(work_wall, 3), "check work cpu s": round(work_cpu, 3),
            "check work / load, no check (wall)": round(work_wall / wall["load, no check"], 3),
            "check work / load, no check (cpu)": round(work_cpu / cpu["load, no check"], 3),
            "digests read alone cpu s": round(min(
                _timed(lambda: integrity._read_digests(FeatureStore.open(path), split))[1] for _ in range(repeats)), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of UCF101's video counts")
    parser.add_argument("--dir", default=None, help="where to write the synthetic store (default: a temp folder)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mdmf-integrity-", dir=args.dir))
    try:
        start = time.perf_counter()
        synthesize(base / "store", scale=args.scale)
        written = time.perf_counter() - start
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "load_avg": os.getloadavg(),
                  "written_s": round(written, 1), "splits": measure(base / "store", args.repeats)}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for split, row in result["splits"].items():
        print(split, json.dumps(row))
    print("load average", result["load_avg"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
