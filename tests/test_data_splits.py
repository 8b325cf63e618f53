"""The shipped splits, the split-file reader, video lookup on disk, readable class names and prompts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.splits import (DEFAULT_EXTENSIONS, DatasetInfo, SplitEntry, SHIPPED_DATASETS, SHIPPED_SPLITS_ROOT, load_splits, prompt_for,
                             readable_class_name, resolve_video, splits_dir)

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference-splits"

# videos and classes per split, from SOURCES.md ("Counts")
COUNTS = {
    "hmdb51": {"train": (4280, 31), "val": (1194, 10), "test": (1292, 10)},
    "ucf101": {"train": (9154, 70), "val": (1421, 10), "test": (2745, 21)},
    "kinetics100": {"train": (6400, 64), "val": (1200, 12), "test": (2400, 24)},
    "ssv2_small": {"train": (6400, 64), "val": (1200, 12), "test": (2400, 24)},
    "ssv2_full": {"train": (67013, 64), "val": (1926, 12), "test": (2857, 24)},
}


@pytest.fixture(scope="module")
def shipped():
    return {name: load_splits(splits_dir(name)) for name in SHIPPED_DATASETS}


# ---- the shipped splits -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHIPPED_DATASETS)
def test_shipped_counts_and_disjoint_classes(shipped, name):
    data = shipped[name]
    assert set(COUNTS) == set(SHIPPED_DATASETS)
    for split, (videos, classes) in COUNTS[name].items():
        assert len(data.entries[split]) == videos
        assert len(data.classes[split]) == classes
        assert sorted({e.label for e in data.entries[split]}) == list(range(classes))
        assert all(data.classes[split][e.label] == e.class_name for e in data.entries[split])
    train, val, test = (set(data.classes[s]) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test


def test_shipped_info(shipped):
    for name, data in shipped.items():
        assert data.info.name == name
        ssv2 = name.startswith("ssv2")
        assert data.info.layout == ("flat" if ssv2 else "class_folders")
        assert data.info.flip is not ssv2
        assert data.info.source


def test_shipped_class_order_is_clip_fsar(shipped):
    # CLIP-FSAR's CLASS_NAME lists start with these (class id 0 -> first prompt)
    assert shipped["hmdb51"].classes["train"][:3] == ["brush_hair", "catch", "chew"]
    assert shipped["ucf101"].classes["train"][0] == "ApplyEyeMakeup"
    assert shipped["ssv2_small"].classes["train"][0] == "Pouring something into something"
    assert shipped["ssv2_full"].classes["train"][:2] == ["Bending something until it breaks", "Closing something"]


def test_ssv2_full_val_names_are_real_labels(shipped):
    val = shipped["ssv2_full"].classes["val"]
    assert val[0] == "Holding something over something" and val[-1] == "Throwing something in the air and catching it"
    assert not any(name.startswith("SSv2 label") for name in val)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="reference lists not present")
def test_build_script_reproduces_shipped_splits(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_splits.py"), str(REFERENCE), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in SHIPPED_DATASETS:
        for path in sorted((SHIPPED_SPLITS_ROOT / name).iterdir()):
            assert (tmp_path / name / path.name).read_bytes() == path.read_bytes(), path


# ---- splits_dir -------------------------------------------------------------------------------------------------

def test_splits_dir(tmp_path):
    assert splits_dir("hmdb51") == SHIPPED_SPLITS_ROOT / "hmdb51"
    assert splits_dir("anything", tmp_path) == tmp_path
    assert splits_dir("toy", root=tmp_path) == tmp_path / "splits"
    with pytest.raises(MdmfError, match=r"unknown dataset 'mydata'.*hmdb51.*--splits DIR"):
        splits_dir("mydata")
    with pytest.raises(MdmfError, match="--root"):
        splits_dir("toy")
    with pytest.raises(MdmfError, match="no such folder"):
        splits_dir("hmdb51", tmp_path / "nope")


# ---- reading split files: errors name the file and line ---------------------------------------------------------

INFO = {"name": "mine", "layout": "class_folders", "flip": True, "extensions": ["mp4"]}


def write_splits(folder: Path, videos: str, classes: str = "a\nb\n", info: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(videos)
    (folder / "train_classes.txt").write_text(classes)
    (folder / "info.json").write_text(json.dumps(INFO if info is None else info))
    return folder


def test_load_valid_with_comments_and_blank_lines(tmp_path):
    data = load_splits(write_splits(tmp_path, "# header\na\tv1\n\nb\tv2\r\na\tv3\n"))
    assert list(data.entries) == ["train"]
    assert data.entries["train"] == [SplitEntry("a", "v1", 0), SplitEntry("b", "v2", 1), SplitEntry("a", "v3", 0)]
    assert data.classes["train"] == ["a", "b"]
    assert data.info == DatasetInfo("mine", "class_folders", True, ("mp4",), "")
    assert data.name == "mine"


@pytest.mark.parametrize("videos, classes, pattern", [
    ("a\tv1\nb v2\n", "a\nb\n", r"train\.txt:2: expected '<class name><TAB><video id>', got 1"),
    ("a\tv1\tx\nb\tv2\n", "a\nb\n", r"train\.txt:1: .*got 3"),
    ("a\tv1\nc\tv2\n", "a\nb\n", r"train\.txt:2: class 'c' is not in train_classes\.txt"),
    ("a\tv1\nb\tv2\n\na\tv1\n", "a\nb\n", r"train\.txt:4: video 'v1' is listed twice \(first on line 1\)"),
    ("a\tv1\nb\tv2\n", "a\nb\na\n", r"train_classes\.txt:3: class 'a' is listed twice"),
    ("a\tv1\n", "a\nb\n", r"train_classes\.txt: 1 class\(es\) have no video"),
    ("\tv1\n", "a\n", r"train\.txt:1: empty class name"),
    ("# nothing\n", "a\n", r"train\.txt: no videos"),
])
def test_malformed_split_files(tmp_path, videos, classes, pattern):
    with pytest.raises(MdmfError, match=pattern):
        load_splits(write_splits(tmp_path, videos, classes))


def test_missing_and_invalid_files(tmp_path):
    folder = write_splits(tmp_path / "s", "a\tv1\n", "a\n")
    (folder / "val.txt").write_text("a\tv2\n")
    with pytest.raises(MdmfError, match=r"val\.txt exists but .*val_classes\.txt is missing"):
        load_splits(folder)
    (folder / "val.txt").unlink()
    for info, pattern in (({"layout": "tree", "flip": True}, "layout"), ({"layout": "flat", "flip": "no"}, "flip"),
                          ({"layout": "flat", "flip": False, "extensions": []}, "extensions")):
        (folder / "info.json").write_text(json.dumps(info))
        with pytest.raises(MdmfError, match=pattern):
            load_splits(folder)
    (folder / "info.json").write_text("{not json")
    with pytest.raises(MdmfError, match="not valid JSON"):
        load_splits(folder)
    with pytest.raises(MdmfError, match="does not exist"):
        load_splits(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "info.json").write_text(json.dumps(INFO))
    with pytest.raises(MdmfError, match="no split files"):
        load_splits(empty)


def test_info_defaults(tmp_path):
    data = load_splits(write_splits(tmp_path / "mydata", "a\tv\n", "a\n", {"layout": "flat", "flip": False}))
    assert data.info.name == "mydata"
    assert data.info.extensions == DEFAULT_EXTENSIONS and DEFAULT_EXTENSIONS[:4] == ("avi", "mp4", "webm", "mkv")
    assert data.info.written and data.info.defaults_note(data.path) is None


def test_no_info_json_detects_the_layout_and_says_the_defaults_once(tmp_path):
    """Without info.json (or with one that leaves layout and flip out): class folders, else flat, the reader's
    extensions, the folder's name, flip on; the note names the file and how to turn flip off."""
    folder = write_splits(tmp_path / "mine", "a\tv1\nb\tv2\n", "a\nb\n")
    (folder / "info.json").unlink()
    data = load_splits(folder)
    assert (data.info.name, data.info.layout, data.info.flip) == ("mine", "auto", True)
    note = data.info.defaults_note(folder)
    assert "no info.json" in note and '{"flip": false}' in note and "SSv2" in note
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    (root / "a" / "v1.mov").write_bytes(b"x")  # a class folder, an extension the reader opens
    (root / "v2.mp4").write_bytes(b"x")  # flat
    a, b = data.entries["train"]
    assert resolve_video(root, a, data.info) == root / "a" / "v1.mov"
    assert resolve_video(root, b, data.info) == root / "v2.mp4"
    (folder / "info.json").write_text(json.dumps({"name": "x"}))
    assert not load_splits(folder).info.written


# ---- finding videos ---------------------------------------------------------------------------------------------

def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_resolve_class_folders(tmp_path):
    info = DatasetInfo("d", "class_folders", True, ("avi", "mp4", "webm", "mkv"))
    ucf = touch(tmp_path / "ApplyEyeMakeup" / "v_1.avi")
    assert resolve_video(tmp_path, SplitEntry("ApplyEyeMakeup", "v_1", 0), info) == ucf
    spaced = touch(tmp_path / "air drumming" / "x.mp4")
    assert resolve_video(tmp_path, SplitEntry("air drumming", "x", 0), info) == spaced
    underscored = touch(tmp_path / "blasting_sand" / "y.webm")
    assert resolve_video(tmp_path, SplitEntry("blasting sand", "y", 0), info) == underscored
    # extensions are tried in info order
    touch(tmp_path / "ApplyEyeMakeup" / "v_2.mkv")
    first = touch(tmp_path / "ApplyEyeMakeup" / "v_2.mp4")
    assert resolve_video(tmp_path, SplitEntry("ApplyEyeMakeup", "v_2", 0), info) == first
    assert resolve_video(tmp_path, SplitEntry("ApplyEyeMakeup", "v_3", 0), info) is None
    assert resolve_video(tmp_path, SplitEntry("NoSuchClass", "v_1", 0), info) is None
    only_mp4 = DatasetInfo("d", "class_folders", True, ("mp4",))
    assert resolve_video(tmp_path, SplitEntry("ApplyEyeMakeup", "v_1", 0), only_mp4) is None


def test_resolve_one_level_of_split_folders(tmp_path):
    info = DatasetInfo("d", "class_folders", True, ("mp4",))
    a = touch(tmp_path / "train_256" / "air_drumming" / "a.mp4")
    b = touch(tmp_path / "val_256" / "air_drumming" / "b.mp4")
    assert resolve_video(tmp_path, SplitEntry("air drumming", "a", 0), info) == a
    assert resolve_video(tmp_path, SplitEntry("air drumming", "b", 0), info) == b
    assert resolve_video(tmp_path, SplitEntry("air drumming", "c", 0), info) is None


def test_resolve_flat(tmp_path):
    info = DatasetInfo("ssv2", "flat", False, ("webm", "mp4"))
    webm = touch(tmp_path / "51958.webm")
    mp4 = touch(tmp_path / "103723.mp4")
    assert resolve_video(tmp_path, SplitEntry("Pouring something into something", "51958", 0), info) == webm
    assert resolve_video(tmp_path, SplitEntry("Pouring something into something", "103723", 0), info) == mp4
    assert resolve_video(tmp_path, SplitEntry("Pouring something into something", "1", 0), info) is None


# ---- class names as text ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, readable", [
    ("ApplyEyeMakeup", "apply eye makeup"), ("brush_hair", "brush hair"), ("YoYo", "yo yo"),
    ("BlowDryHair", "blow dry hair"), ("air drumming", "air drumming"), ("TaiChi", "tai chi"),
    ("Pouring [something] into [something]", "pouring something into something"),
    ("Twisting (wringing) something wet until water comes out", "twisting (wringing) something wet until water comes out"),
    ("Pushing something so that it almost falls off but doesn't", "pushing something so that it almost falls off but doesn't"),
])
def test_readable_class_name(name, readable):
    assert readable_class_name(name) == readable


def test_prompt_for():
    assert prompt_for("ApplyEyeMakeup") == "a photo of apply eye makeup"
    assert prompt_for("brush_hair", "a video of a person {}.") == "a video of a person brush hair."
    with pytest.raises(MdmfError, match="no {}"):
        prompt_for("x", "a photo")
    with pytest.raises(MdmfError, match="exactly one"):
        prompt_for("x", "{} {name}")
