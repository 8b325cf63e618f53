"""The toy dataset generator (pipeline/data/toy.py): determinism, split files, readable videos, motion, idempotence."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.sampling import tsn_indices
from mdmf.pipeline.data.toy import (
    BACKGROUND, CROP_FRACTION, MOTIONS, RELATED_TRAIN_CLASS, SPLIT_CLASSES, STAMP, ToyConfig, generate_toy,
    render_video, video_id,
)

SMALL = ToyConfig(videos_per_class=2)


def _foreground(frame: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: pixels clearly off the background colour."""
    return np.abs(frame.astype(np.int16) - np.array(BACKGROUND, np.int16)).sum(-1) > 60


def test_same_seed_same_frames_other_seed_other_frames():
    a, b = render_video("moving_left", 3, SMALL), render_video("moving_left", 3, SMALL)
    assert a.dtype == np.uint8 and a.shape == (32, 64, 64, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, render_video("moving_left", 3, ToyConfig(seed=1, videos_per_class=2)))
    assert not np.array_equal(a, render_video("moving_left", 4, SMALL))


def test_workers_do_not_change_the_videos(tmp_path):
    decord = pytest.importorskip("decord")  # the optional extra mdmf[decord] (in mdmf[test] on x86-64)

    root = generate_toy(tmp_path / "toy1", SMALL, progress=False, workers=1)
    other = generate_toy(tmp_path / "toy2", SMALL, progress=False, workers=2)
    for name in ("moving_left", "turning_clockwise"):
        path = f"videos/{name}/{video_id(name, 1)}.mp4"
        a = decord.VideoReader(str(root / path)).get_batch(list(range(32))).asnumpy()
        b = decord.VideoReader(str(other / path)).get_batch(list(range(32))).asnumpy()
        np.testing.assert_array_equal(a, b)


def test_split_files_follow_the_contract(toy_dataset):
    from mdmf.pipeline.data.splits import load_splits, resolve_video

    root, config = toy_dataset
    splits = load_splits(root / "splits")
    assert splits.info.layout == "class_folders" and splits.info.flip is False and splits.info.name == "toy"
    seen: set[str] = set()
    for split, classes in SPLIT_CLASSES.items():
        assert splits.classes[split] == list(classes)
        assert not seen & set(classes), "classes must be disjoint across splits"
        seen |= set(classes)
        entries = splits.entries[split]
        assert len(entries) == len(classes) * config.videos_per_class
        for e in entries:
            assert resolve_video(root, e, splits.info) == root / "videos" / e.class_name / f"{e.video_id}.mp4"
    assert seen == set(MOTIONS)
    assert len(SPLIT_CLASSES["test"]) >= 5 and len(SPLIT_CLASSES["val"]) >= 5
    line = (root / "splits" / "test.txt").read_text().splitlines()[0]
    assert line == f"{SPLIT_CLASSES['test'][0]}\t{video_id(SPLIT_CLASSES['test'][0], 0)}"


def test_every_val_and_test_class_has_a_relative_in_train():
    for split in ("val", "test"):
        for name in SPLIT_CLASSES[split]:
            assert RELATED_TRAIN_CLASS[name] in SPLIT_CLASSES["train"], name


def test_class_names_read_as_prompts():
    from mdmf.pipeline.data.splits import prompt_for

    assert prompt_for("moving_left") == "a photo of moving left"
    assert prompt_for("turning_counterclockwise") == "a photo of turning counterclockwise"


def test_decord_reads_every_video_with_all_frames(toy_dataset):
    decord = pytest.importorskip("decord")  # the optional extra mdmf[decord] (in mdmf[test] on x86-64)

    root, config = toy_dataset
    for classes in SPLIT_CLASSES.values():
        for name in classes:
            for i in range(config.videos_per_class):
                reader = decord.VideoReader(str(root / "videos" / name / f"{video_id(name, i)}.mp4"), num_threads=1)
                assert len(reader) == config.frames
                assert reader[SMALL.frames - 1].shape == (64, 64, 3)


def test_objects_move_and_stay_inside_the_centre_crop():
    margin = int(np.ceil(64 * (1 - CROP_FRACTION) / 2))  # the pipeline crops this much off each side
    centres = tsn_indices(32, 8)
    for name in MOTIONS:
        video = render_video(name, 0, SMALL)
        sampled = video[centres].astype(np.int16)
        assert np.abs(sampled[1:] - sampled[:-1]).mean(axis=(1, 2, 3)).min() > 0.05, f"{name}: a still step"
        fg = np.stack([_foreground(f) for f in video])
        assert fg.any(axis=(1, 2)).all(), f"{name}: an empty frame"
        border = fg.copy()
        border[:, margin:-margin, margin:-margin] = False
        assert not border.any(), f"{name}: the object leaves the centre crop"


def _centroid(frame: np.ndarray) -> tuple[float, float, int]:
    ys, xs = np.nonzero(_foreground(frame))
    return float(xs.mean()), float(ys.mean()), len(xs)


def test_motions_do_what_their_names_say():
    for i in range(3):
        left = render_video("moving_left", i, SMALL)
        assert _centroid(left[-1])[0] < _centroid(left[0])[0] - 15
        up_right = render_video("moving_up_right", i, SMALL)
        (x0, y0, _), (x1, y1, _) = _centroid(up_right[0]), _centroid(up_right[-1])
        assert x1 > x0 + 10 and y1 < y0 - 10
        back = render_video("going_down_and_back", i, SMALL)
        ys = [_centroid(f)[1] for f in back]
        assert max(ys) > ys[0] + 10 and abs(ys[-1] - ys[0]) < 2
        grow = render_video("growing", i, SMALL)
        assert _centroid(grow[-1])[2] > 4 * _centroid(grow[0])[2]
        # circling clockwise on screen (y down): the path turns with a positive cross product
        circle = render_video("circling_clockwise", i, SMALL)
        p = np.array([_centroid(f)[:2] for f in circle[::4]])
        d = np.diff(p, axis=0)
        assert (d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]).mean() > 0


def test_second_call_does_nothing(toy_dataset):
    root, config = toy_dataset
    path = root / "videos" / "moving_left" / f"{video_id('moving_left', 0)}.mp4"
    before = os.stat(path).st_mtime_ns
    assert generate_toy(root, config, progress=False) == root
    assert os.stat(path).st_mtime_ns == before


def test_other_config_in_the_same_folder_is_a_clear_error(toy_dataset):
    root, config = toy_dataset
    with pytest.raises(MdmfError, match="another config.*videos_per_class 6 vs 3.*delete"):
        generate_toy(root, replace(config, videos_per_class=3), progress=False)


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(MdmfError, match="holds no toy dataset"):
        generate_toy(tmp_path, SMALL, progress=False)


def test_interrupted_generation_is_completed(tmp_path):
    root = generate_toy(tmp_path / "toy", ToyConfig(videos_per_class=1), progress=False, workers=1)
    stamp = json.loads((root / STAMP).read_text())
    assert stamp["config"]["videos_per_class"] == 1
    (root / STAMP).unlink()  # as if killed before the stamp was written
    victim = root / "videos" / "shrinking" / f"{video_id('shrinking', 0)}.mp4"
    victim.unlink()
    generate_toy(root, ToyConfig(videos_per_class=1), progress=False, workers=1)
    assert victim.is_file() and (root / STAMP).is_file()


def test_no_config_takes_the_toy_set_that_is_there(toy_dataset, tmp_path):
    root, config = toy_dataset
    assert generate_toy(root, progress=False) == root  # what `--dataset toy --root DIR` does
    fresh = generate_toy(tmp_path / "fresh", ToyConfig(videos_per_class=1), progress=False, workers=1)
    stamp = json.loads((fresh / STAMP).read_text())
    stamp["generator_version"] = -1  # an older generator drew other videos
    (fresh / STAMP).write_text(json.dumps(stamp))
    with pytest.raises(MdmfError, match="generator -1 vs"):
        generate_toy(fresh, progress=False)
