import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import MICRO_CONFIG, SMALL_CLASSES
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.features.extract import run_extract
from mdmf.pipeline.features.recipe import ExtractConfig
from mdmf.pipeline.data.sampling import tsn_indices
from mdmf.pipeline.features.store import FAILED, OK, SHORT, FeatureStore
from videogen import write_video


def config(root, splits_dir, out, **kw):
    base = dict(dataset="small", root=str(root), splits_dir=str(splits_dir), out=str(out), backbone=str(MICRO_CONFIG),
                weights="random", train_views=2, chunk_videos=2, workers=0, progress=False)
    return ExtractConfig(**{**base, **kw})


def test_extract_writes_a_complete_store(small_dataset, micro_backbone, tmp_path):
    root, splits = small_dataset
    summary = run_extract(config(root, splits, tmp_path / "store"), backbone=micro_backbone)
    store = FeatureStore.open(tmp_path / "store")
    assert summary.per_split["train"] == {"total": 9, "pending": 0, "ok": 9, "failed": 0, "short": 0}
    assert store.splits == ["train", "val", "test"]
    train, test = store.load("train"), store.load("test")
    assert train.features.shape == (9, 2, 8, 16) and train.features.dtype == np.float16
    assert test.features.shape == (6, 1, 8, 16)
    assert train.class_names == SMALL_CLASSES["train"]
    assert train.prompts[0] == "a photo of apply eye makeup"
    assert train.prompt_embeddings.shape == (3, 16) and np.isfinite(train.prompt_embeddings).all()
    assert np.abs(train.features).sum() > 0
    # val/test: the segment centres; train: two different random samplings per video
    for row, vid in enumerate(test.video_ids):
        n = 24 + int(vid.rsplit("_", 1)[1])
        np.testing.assert_array_equal(test.frame_indices[row, 0], tsn_indices(n, 8))
    assert not np.array_equal(train.frame_indices[:, 0], train.frame_indices[:, 1])
    assert not np.allclose(train.features[:, 0], train.features[:, 1])
    assert (tmp_path / "store" / "summary.json").is_file()


def test_same_settings_same_store_and_rerun_is_a_no_op(small_dataset, micro_backbone, tmp_path):
    root, splits = small_dataset
    run_extract(config(root, splits, tmp_path / "a"), backbone=micro_backbone)
    again = run_extract(config(root, splits, tmp_path / "a"), backbone=micro_backbone)
    assert again.videos_done == 0
    run_extract(config(root, splits, tmp_path / "b", workers=2), backbone=micro_backbone)
    a, b = FeatureStore.open(tmp_path / "a"), FeatureStore.open(tmp_path / "b")
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.load(split).features, b.load(split).features)
        np.testing.assert_array_equal(a.load(split).frame_indices, b.load(split).frame_indices)


def test_bad_videos_are_recorded_not_fatal(small_dataset, micro_backbone, tmp_path):
    root, splits = small_dataset
    bad_root = tmp_path / "videos"
    shutil.copytree(root, bad_root)
    (bad_root / "YoYo" / "YoYo_val_0.mp4").write_bytes(b"")  # zero bytes
    (bad_root / "YoYo" / "YoYo_val_1.mp4").write_bytes(b"\x00\x01garbage" * 100)  # not a video
    (bad_root / "walk" / "walk_val_0.mp4").unlink()  # missing
    good = bad_root / "walk" / "walk_val_1.mp4"
    good.write_bytes(good.read_bytes()[:300])  # truncated
    write_video(bad_root / "walk" / "walk_val_2.mp4", 3)  # short: 3 frames
    summary = run_extract(config(bad_root, splits, tmp_path / "store", splits=("val",)), backbone=micro_backbone)
    store = FeatureStore.open(tmp_path / "store")
    status = dict(zip(store.strings("val", "video_ids"), store.status("val")))
    assert status == {"YoYo_val_0": FAILED, "YoYo_val_1": FAILED, "YoYo_val_2": OK,
                      "walk_val_0": FAILED, "walk_val_1": FAILED, "walk_val_2": SHORT}
    reasons = {vid: reason for vid, _, reason in summary.failures["val"]}
    assert "empty" in reasons["YoYo_val_0"] and "not found" in reasons["walk_val_0"]
    assert "cannot" in reasons["YoYo_val_1"]
    val = store.load("val")
    assert val.video_ids == ["YoYo_val_2", "walk_val_2"]  # later stages skip failed videos
    assert sorted(set(val.frame_indices[1, 0].tolist())) == [0, 1, 2]


def test_a_store_made_with_other_settings_is_never_mixed(small_dataset, micro_backbone, tmp_path):
    root, splits = small_dataset
    run_extract(config(root, splits, tmp_path / "s", splits=("test",)), backbone=micro_backbone)
    with pytest.raises(MdmfError, match="frames=8.*frames=4"):
        run_extract(config(root, splits, tmp_path / "s", splits=("test",), frames=4), backbone=micro_backbone)
    with pytest.raises(MdmfError, match="prompt_template"):
        run_extract(config(root, splits, tmp_path / "s", splits=("test",), prompt_template="a video of {}"),
                    backbone=micro_backbone)


def test_shards_fill_one_store(small_dataset, micro_backbone, tmp_path):
    root, splits = small_dataset
    run_extract(config(root, splits, tmp_path / "whole"), backbone=micro_backbone)
    first = run_extract(config(root, splits, tmp_path / "sharded", shard=(0, 2)), backbone=micro_backbone)
    assert 0 < first.per_split["train"]["pending"] < 9
    assert not (tmp_path / "sharded" / "summary.json").exists()
    run_extract(config(root, splits, tmp_path / "sharded", shard=(1, 2)), backbone=micro_backbone)
    whole, sharded = FeatureStore.open(tmp_path / "whole"), FeatureStore.open(tmp_path / "sharded")
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(whole.load(split).features, sharded.load(split).features)


def test_save_frames_keeps_the_encoded_crops(small_dataset, micro_backbone, tmp_path):
    root, splits = small_dataset
    run_extract(config(root, splits, tmp_path / "s", splits=("test",), save_frames=True), backbone=micro_backbone)
    frames = FeatureStore.open(tmp_path / "s").group("test")["frames"][:]
    assert frames.shape == (6, 1, 8, 32, 32, 3) and frames.dtype == np.uint8 and frames.max() > 200


def test_missing_root_and_bad_shard_are_user_errors(small_dataset, tmp_path):
    _, splits = small_dataset
    with pytest.raises(MdmfError, match="--root"):
        run_extract(config(tmp_path / "nowhere", splits, tmp_path / "s"))
    with pytest.raises(MdmfError, match="shard"):
        run_extract(config(tmp_path, splits, tmp_path / "s", shard=(2, 2)))


def test_the_summary_says_where_the_time_went(small_dataset, micro_backbone, tmp_path):
    root, splits = small_dataset
    summary = run_extract(config(root, splits, tmp_path / "store"), backbone=micro_backbone)
    t = summary.times
    assert set(t) == {"waiting_for_decode", "encoding", "writing", "waiting_for_writer"}
    assert min(t.values()) >= 0 and t["encoding"] > 0 and t["writing"] > 0 and t["waiting_for_decode"] > 0
    assert t["waiting_for_decode"] + t["encoding"] + t["waiting_for_writer"] <= summary.seconds
    assert run_extract(config(root, splits, tmp_path / "store"), backbone=micro_backbone).times == {}  # nothing to do


def test_a_failing_write_stops_the_run_and_keeps_the_units_before_it(small_dataset, micro_backbone, tmp_path,
                                                                     monkeypatch):
    root, splits = small_dataset
    original, calls = FeatureStore.write_unit, []

    def write_unit(self, split, unit, *args, **kw):
        calls.append((split, unit))
        if len(calls) == 3:
            raise OSError("disk full")
        original(self, split, unit, *args, **kw)

    monkeypatch.setattr(FeatureStore, "write_unit", write_unit)
    with pytest.raises(OSError, match="disk full"):
        run_extract(config(root, splits, tmp_path / "store"), backbone=micro_backbone)
    progress = FeatureStore.open(tmp_path / "store").progress()["train"]
    assert progress["total"] - progress["pending"] == 4  # the two units (of 2 videos) written before the failure
    monkeypatch.setattr(FeatureStore, "write_unit", original)
    summary = run_extract(config(root, splits, tmp_path / "store"), backbone=micro_backbone)
    assert summary.videos_done == 9 + 6 + 6 - 4 and summary.per_split["train"]["pending"] == 0


def test_a_video_that_kills_its_decode_worker_is_recorded_and_the_run_goes_on(small_dataset, micro_backbone,
                                                                               tmp_path, monkeypatch):
    import faulthandler
    import os

    import mdmf.pipeline.features.extract as ex

    root, splits = small_dataset
    deadly = {"JumpRope_train_1", "brush_hair_train_2"}  # a unit's last video, and one in the middle of a unit
    real = ex.decode_views

    def decode(path, *args, **kw):
        if Path(path).stem in deadly:
            faulthandler.disable()  # pytest's crash dump, inherited by the fork, would flood the log
            os.abort()  # what decord does on some damaged files; the forked workers inherit this patch
        return real(path, *args, **kw)

    def refuse(path, *args, **kw):
        if Path(path).stem in deadly:
            return {"status": FAILED, "error": ex.CRASHED, "crops": None,
                    "indices": np.full((len(args[2]), args[0]), -1, np.int32)}
        return real(path, *args, **kw)

    monkeypatch.setattr(ex, "decode_views", decode)
    summary = run_extract(config(root, splits, tmp_path / "crash", workers=2, splits=("train",)),
                          backbone=micro_backbone)
    reasons = {vid: reason for vid, _, reason in summary.failures["train"]}
    assert reasons == {vid: ex.CRASHED for vid in deadly}
    assert summary.per_split["train"] == {"total": 9, "pending": 0, "ok": 7, "failed": 2, "short": 0}
    monkeypatch.setattr(ex, "decode_views", refuse)  # the same outcome without any crash, in this process
    run_extract(config(root, splits, tmp_path / "calm", workers=0, splits=("train",)), backbone=micro_backbone)
    a, b = FeatureStore.open(tmp_path / "crash"), FeatureStore.open(tmp_path / "calm")
    for name in ("features", "frame_indices", "status", "errors"):
        np.testing.assert_array_equal(a.group("train")[name][:], b.group("train")[name][:])
