"""Issue 22, point 9: a --save-frames store run again without the flag is reused, recorded paths are normalised,
TensorBoard tags do not repeat their prefix (predict's title and PPS prompt: tests/test_apps_predict.py, the wheel's
build folder: tests/test_packaging.py)."""

import os

import numpy as np

from conftest import MICRO_CONFIG
from mdmf.pipeline.features.extract import ExtractConfig, run_extract
from mdmf.pipeline.features.store import FeatureStore
from mdmf.pipeline.train.tracking import tag


def config(root, splits_dir, out, **kw):
    base = dict(dataset="small", root=str(root), splits_dir=str(splits_dir), out=str(out), backbone=str(MICRO_CONFIG),
                weights="random", chunk_videos=4, workers=0, progress=False)
    return ExtractConfig(**{**base, **kw})


def test_a_save_frames_store_run_again_without_the_flag_is_reused(small_dataset, micro_backbone, tmp_path, capsys):
    root, splits = small_dataset
    out = tmp_path / "store"
    first = run_extract(config(root, splits, out, save_frames=True), backbone=micro_backbone)
    assert first.videos_done == 21
    before = {s: FeatureStore.open(out).group(s)["features"][:] for s in ("train", "val", "test")}
    again = run_extract(config(root, splits, out, progress=True), backbone=micro_backbone)  # no --save-frames
    assert again.videos_done == 0  # every finished unit reused, none encoded again
    err = capsys.readouterr().err
    assert err.count("was made with --save-frames: continuing it") == 1
    store = FeatureStore.open(out)
    for split, feats in before.items():
        np.testing.assert_array_equal(store.group(split)["features"][:], feats)
        assert "frames" in store.group(split)


def test_recorded_paths_are_normalised(small_dataset, micro_backbone, tmp_path, monkeypatch):
    root, splits = small_dataset
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    climbing = os.path.relpath(root, tmp_path / "work")  # ../../…/videos, from work/
    given = f"work/{climbing}"
    assert ".." in given
    run_extract(config(given, f"work/{os.path.relpath(splits, tmp_path / 'work')}", tmp_path / "s"),
                backbone=micro_backbone)
    store = FeatureStore.open(tmp_path / "s")
    recorded = store.meta["config"]
    assert recorded["root"] == str(root.resolve()) and ".." not in recorded["splits_dir"]
    paths = [p for s in store.splits for p in store.strings(s, "paths")]
    assert paths and all(".." not in p and p.startswith(str(root.resolve())) for p in paths)


def test_tracker_tags_do_not_repeat_their_prefix():
    assert tag("val", "val_accuracy") == "val/accuracy" and tag("val", "val_ci95") == "val/ci95"
    assert tag("train", "train_accuracy") == "train/accuracy" and tag("train", "loss") == "train/loss"
    assert tag("train", "ce") == "train/ce"



def test_extract_says_it_is_loading_the_model_and_counts_videos_inside_a_unit(small_dataset, tmp_path, capsys,
                                                                              monkeypatch):
    """Point 4: a line before the model is built, and progress that advances video by video within one unit (here
    a single unit of all 21 videos), not once per unit."""
    import mdmf.pipeline.features.extract as extract

    root, splits = small_dataset
    told = []
    real = extract._encode_unit

    def spy(*args):
        advance = args[-1]
        return real(*args[:-1], lambda n=1, **f: (told.append(n), advance(n, **f)))

    monkeypatch.setattr(extract, "_encode_unit", spy)
    monkeypatch.setenv("MDMF_PROGRESS_EVERY", "0")
    run_extract(config(root, splits, tmp_path / "s", chunk_videos=64, batch_frames=8, progress=True))
    err, out = capsys.readouterr()[::-1]
    assert any(line.startswith("loading the model ") and "mdmf-micro" in line for line in err.splitlines()), err
    assert "WARNING:root:" not in err
    assert sum(told) == 21 and len(told) > 3  # videos counted as their frames are encoded, batch by batch
    counts = [int(line.split("/")[0].split()[-1]) for line in out.splitlines() if line.startswith("extract:")]
    assert counts == sorted(counts) and counts[-1] == 21 and len(set(counts)) > 3
