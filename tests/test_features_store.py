"""The feature store: its typed metadata, the rows `load` keeps (against a plain Zarr read), its memory peak, and the
status reads that resumption relies on."""

import tracemalloc

import numpy as np
import pytest
import zarr

from mdmf.pipeline.features.store import (FAILED, IDENTITY_DEFAULTS, OK, SHORT, FeatureStore, SplitLayout, StoreMeta,
                                          store_info)

T, D, CHUNK = 8, 64, 16


def write_store(path, videos: int, failed=(), short=(), views: int = 2, pending_units=()) -> FeatureStore:
    """A one-split store ("train") of `videos` videos whose features are their row number (so rows can be told
    apart), `failed` / `short` rows marked so, units in `pending_units` not written."""
    rng = np.random.default_rng(0)
    labels = np.arange(videos) % 14
    layout = SplitLayout(video_ids=[f"v{i}" for i in range(videos)], paths=[f"/videos/v{i}.mp4" for i in range(videos)],
                         labels=labels, class_names=[f"c{c}" for c in range(14)],
                         prompts=[f"a photo of c{c}" for c in range(14)], views=views)
    store = FeatureStore.create_or_open(path, meta={"backbone": {"backbone": "synthetic"}},
                                        identity={"dataset": "synthetic"}, layouts={"train": layout}, frames=T, dim=D,
                                        chunk_videos=CHUNK)
    feats = rng.normal(size=(videos, views, T, D)).astype(np.float16)
    feats[:, 0, 0, 0] = np.arange(videos)
    for unit in range(store.num_units("train")):
        if unit in pending_units:
            continue
        rows = store.unit_rows("train", unit)
        status = np.array([FAILED if r in failed else SHORT if r in short else OK for r in rows], np.int8)
        errors = ["no such file" if r in failed else "" for r in rows]
        indices = np.tile(np.arange(T, dtype=np.int32), (len(rows), views, 1)) + np.array(rows)[:, None, None]
        store.write_unit("train", unit, feats[rows.start : rows.stop], indices, status, errors)
    store.write_prompt_embeddings("train", rng.normal(size=(14, D)).astype(np.float32))
    return FeatureStore.open(path)


def test_store_meta_is_typed_with_its_defaults_and_reads_as_the_attributes(tmp_path):
    store = write_store(tmp_path / "s", 20)
    meta = store.meta
    assert isinstance(meta, StoreMeta) and (meta.frames, meta.dim, meta.chunk_videos) == (T, D, CHUNK)
    assert meta.identity == {**IDENTITY_DEFAULTS, "dataset": "synthetic"} and meta.backbone == {"backbone": "synthetic"}
    assert meta.flip is True and meta.made_as({"dataset": "synthetic"}) and not meta.made_as({"dataset": "other"})
    raw = dict(zarr.open_group(str(tmp_path / "s"), mode="r").attrs["mdmf"])
    assert dict(meta) == {**raw, "identity": meta.identity, "config": {}, "versions": {}}  # the mapping view
    assert meta["identity"] is meta.identity and StoreMeta.of(dict(meta)) == meta and StoreMeta.of(meta) is meta
    assert StoreMeta.from_attrs({**raw, "later": 1}).extra == {"later": 1}  # an attribute of a newer mdmf is kept


def test_load_keeps_the_usable_rows_as_a_plain_zarr_read_does(tmp_path):
    """Ground truth: the arrays read whole with Zarr, then filtered; failed rows at a chunk's start, end and middle."""
    failed, short = {0, 47, 48, 95, 100, 203}, {5, 96}
    store = write_store(tmp_path / "s", 205, failed=failed, short=short)
    data = store.load("train")
    group = zarr.open_group(str(tmp_path / "s"), mode="r")["train"]
    keep = np.array([r for r in range(205) if r not in failed])
    np.testing.assert_array_equal(data.rows, keep)
    np.testing.assert_array_equal(data.features, group["features"][:][keep])
    np.testing.assert_array_equal(data.frame_indices, group["frame_indices"][:][keep])
    np.testing.assert_array_equal(data.labels, (keep % 14).astype(np.int64))
    assert data.video_ids == [f"v{r}" for r in keep] and data.features.dtype == np.float16


def test_load_peaks_near_the_size_of_what_it_returns(tmp_path):
    """tracemalloc sees numpy's allocations. On a toy-sized train split (560 videos, 2 views, T=8, D=64) reading
    `features[:][rows]` peaked at 2.1x the result; compacting the kept rows in place (`_keep_rows`) stays under 1.6x."""
    store = write_store(tmp_path / "s", 560, failed={3, 300})
    tracemalloc.start()
    try:
        data = store.load("train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    ratio = peak / data.features.nbytes
    assert ratio <= 1.6, f"load peaked at {ratio:.2f}x its features array"


def test_status_progress_and_failures_are_what_was_written(tmp_path):
    store = write_store(tmp_path / "s", 70, failed={2, 40}, short={41}, pending_units=(1, 4))
    status = store.status("train")
    pending = set(range(16, 32)) | set(range(64, 70))
    assert [int(s) for s in status] == [0 if r in pending else FAILED if r in (2, 40) else SHORT if r == 41 else OK
                                        for r in range(70)]
    assert store.pending_units("train") == [1, 4] and store.pending_units("train", 1, 2) == [1]
    assert store.progress()["train"] == {"total": 70, "pending": 22, "ok": 45, "failed": 2, "short": 1}
    assert store.failures("train") == [("v2", "/videos/v2.mp4", "no such file"), ("v40", "/videos/v40.mp4", "no such file")]
    assert store_info(store)["splits"]["train"]["pending"] == 22
    statuses = store.statuses()  # read once, handed on: the same answers
    assert store.pending_units("train", status=statuses["train"]) == [1, 4]
    assert store.progress(statuses) == store.progress()
    assert store.failures("train", statuses["train"]) == store.failures("train")
