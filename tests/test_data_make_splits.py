"""Issue 22, point 2: `mdmf splits` writes the splits folder of a class-folder tree, the files load_splits and
check-data read; the classes are divided whole, by count or fraction, seeded."""

import json

import numpy as np
import pytest

from clirun import run_main
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.make_splits import SplitSizes, class_count, make_splits, split_sizes
from mdmf.pipeline.data.splits import load_splits, resolve_video
from videogen import write_video

CLASSES = [f"class_{c}" for c in range(10)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree") / "videos"
    for c, name in enumerate(CLASSES):
        for j in range(3):
            write_video(root / name / f"v{c}_{j}{'.avi' if j == 2 else '.mp4'}", 8)
    (root / "empty_class").mkdir()  # no videos: not a class
    (root / "class_0" / "notes.txt").write_text("not a video")
    return root


def test_counts_and_fractions():
    assert class_count("3", 10, "--val") == 3 and class_count("0.2", 10, "--val") == 2
    assert class_count("0", 10, "--val") == 0 and class_count("0.25", 9, "--test") == 2  # 2.25 rounded
    assert split_sizes(10, "0.2", "0.2") == SplitSizes(6, 2, 2)
    for bad, pattern in (("x", "a number of classes"), ("1.5", "fraction below 1"), ("-1", "fraction below 1")):
        with pytest.raises(MdmfError, match=pattern):
            class_count(bad, 10, "--val")
    with pytest.raises(MdmfError, match="1 class: a split needs 2"):
        split_sizes(10, "1", "2")
    with pytest.raises(MdmfError, match="leave 1 for train"):
        split_sizes(5, "2", "2")


def test_the_written_folder_is_what_load_splits_reads(tree, tmp_path):
    out = tmp_path / "splits"
    chosen = make_splits(tree, out, val="2", test="0.3", seed=1)
    assert [len(chosen[s]) for s in ("train", "val", "test")] == [5, 2, 3]
    assert sorted(sum(chosen.values(), [])) == CLASSES  # every class once, whole
    loaded = load_splits(out)
    info = json.loads((out / "info.json").read_text())
    assert (info["layout"], info["flip"], info["extensions"]) == ("class_folders", True, ["avi", "mp4"])
    for split, classes in chosen.items():
        assert loaded.classes[split] == classes
        assert len(loaded.entries[split]) == 3 * len(classes)
        for entry in loaded.entries[split]:  # each listed video is the file it names
            path = resolve_video(tree, entry, loaded.info)
            assert path is not None and path.parent.name == entry.class_name
    # seeded: the same seed gives the same files, another seed another division
    again = make_splits(tree, tmp_path / "again", val="2", test="0.3", seed=1)
    assert again == chosen and (tmp_path / "again" / "train.txt").read_text() == (out / "train.txt").read_text()
    other = [make_splits(tree, tmp_path / f"s{s}", val="2", test="0.3", seed=s)["test"] for s in range(2, 6)]
    assert any(o != chosen["test"] for o in other)
    # the classes are a seeded permutation (numpy's), checked from the written test split
    order = np.random.default_rng(1).permutation(sorted(CLASSES))
    assert chosen["test"] == sorted(order[7:])


def test_cli_refuses_to_overwrite_and_check_data_reads_the_result(tree, tmp_path, capsys):
    out = tmp_path / "splits"
    code, stdout, err = run_main(capsys, "splits", "--root", tree, "--out", out, "--val", "0")
    assert code == 0, err
    assert not (out / "val.txt").exists() and "train: 8 classes" in stdout and "test: 2 classes" in stdout
    code, stdout, err = run_main(capsys, "splits", "--root", tree, "--out", out)
    assert code == 2 and "--force" in err
    code, stdout, err = run_main(capsys, "splits", "--root", tree, "--out", out, "--force", "--no-flip")
    assert code == 0 and json.loads((out / "info.json").read_text())["flip"] is False
    assert (out / "val.txt").exists()
    code, stdout, err = run_main(capsys, "check-data", "--dataset", "mine", "--root", tree, "--splits", out,
                                 "--quiet")
    assert code == 0, stdout + err
    assert "all 30 listed videos found and readable" in stdout
    assert "no info.json" not in err  # it was written


def test_check_data_checks_the_episodes_each_split_must_hold(tree, tmp_path, capsys):
    out = tmp_path / "splits"
    make_splits(tree, out, val="2", test="2", seed=0)  # 6 train classes of 3 videos
    code, stdout, err = run_main(capsys, "check-data", "--dataset", "m", "--root", tree, "--splits", out, "--quiet")
    assert code == 0, stdout + err
    text = " ".join(stdout.split())
    assert "train: 5-way 1-shot episodes with 2 queries per class fit (6 classes, 3 videos each)" in text
    assert "warning: a 5-way 1-shot episode with 1 query per class needs 5 classes" in text  # val has 2
    code, stdout, err = run_main(capsys, "check-data", "--dataset", "m", "--root", tree, "--splits", out, "--quiet",
                                 "--way", "2", "--queries", "3")
    assert code == 1  # asked for and does not fit: 1 shot + 3 queries needs 4 videos a class
    assert "split 'train' has 6 classes, 0 of them with 4+ videos (3 videos each): give --queries 2" in \
        " ".join(stdout.split())
