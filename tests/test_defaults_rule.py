"""Issue 22, points 1 and 3: one rule for defaults (a run's episodes, a dataset's only store), episodes that fit the
data (the minimum per class, in one line), and training without a val split."""

import json
import re

import numpy as np
import pytest

from clirun import run_main
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.episodes.sampler import EpisodeSpec, episodes_problem, fitted_episode
from mdmf.pipeline.features.store import FeatureStore, find_store
from synthetic import make_store

SMALL = ["--set", "heads=4", "--set", "mlp_dim=64", "--steps", "4", "--episodes-per-step", "2",
         "--batch-episodes", "2", "--val-every", "2", "--val-episodes", "20", "--device", "cpu", "--quiet"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder whose `cache/mine/tiny` store has 3 train classes of 5 videos, 3 test classes, no val."""
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "cache" / "mine" / "tiny", per_class=5, classes={"train": 3, "test": 3})
    return tmp_path


def test_a_dataset_takes_its_only_store_lists_several_and_never_invents_a_backbone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MdmfError, match=r"no feature store in cache/d; extract one first"):
        find_store("d")
    make_store(tmp_path / "cache" / "d" / "tiny", per_class=2)
    assert find_store("d") == tmp_path.joinpath("cache", "d", "tiny").relative_to(tmp_path)
    make_store(tmp_path / "cache" / "d" / "ViT-B-16", per_class=2)
    with pytest.raises(MdmfError, match=r"2 feature stores in cache/d \(ViT-B-16, tiny\); choose one with --backbone"):
        find_store("d")
    assert find_store("d", "tiny").name == "tiny"
    # the "no feature store" error lists the stores that are there
    with pytest.raises(MdmfError, match=r"no feature store here \(stores in cache/d: ViT-B-16, tiny\)"):
        FeatureStore.open("cache/d/RN50")


def test_the_minimum_per_class_is_one_line_with_the_options_that_fit():
    labels = np.repeat([0, 1, 2], [5, 5, 4])  # 3 classes of 5, 5, 4 videos
    line = episodes_problem(labels, EpisodeSpec(5, 1, 5), "train")
    assert line == ("a 5-way 1-shot episode with 5 queries per class needs 5 classes with at least 6 videos each; "
                    "split 'train' has 3 classes, 0 of them with 6+ videos (4 to 5 videos each): give --way 3 and "
                    "--queries 3 (or lower)")
    assert "1 query per class" in episodes_problem(labels, EpisodeSpec(4, 1, 1), "test")
    assert episodes_problem(labels, EpisodeSpec(3, 1, 3), "train") is None
    # not given: 5-way and 5 queries lowered to what the split holds (3 classes, the third largest has 4 videos)
    assert fitted_episode(labels, shot=1, way=None, queries=None) == (3, 3)
    assert fitted_episode(labels, shot=1, way=2, queries=None) == (2, 4)
    assert fitted_episode(np.repeat(np.arange(8), 9), shot=1, way=None, queries=None) == (5, 5)


def test_train_fits_its_episodes_to_a_small_split_and_trains_without_val(project, capsys):
    code, out, err = run_main(capsys, "train", "--dataset", "mine", *SMALL)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 2, err  # each said once
    assert "the train split has 3 classes (5 videos each): training 3-way 1-shot with 4 queries" in notes[0]
    assert "no val split: training without validation, best.pt is the last checkpoint" in notes[1]
    run = project / "runs" / "mine-mdmf-3w1s"
    saved = json.loads((run / "config.json").read_text())["train"]
    assert (saved["way"], saved["queries"], saved["val"]) == (3, 4, "none")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert not any("val_accuracy" in m for m in metrics)  # nothing was validated
    import torch

    best, last = torch.load(run / "best.pt", weights_only=False), torch.load(run / "last.pt", weights_only=False)
    assert best["step"] == last["step"] == 4 and best["best"]["val_accuracy"] is None
    for k in best["model"]:
        assert torch.equal(best["model"][k], last["model"][k])  # best.pt is the last checkpoint
    assert "4 steps, no validation" in out

    # eval --run: the run's way and shot, no option needed; --way overrides, and too many is one line
    code, out, err = run_main(capsys, "eval", "--run", run, "--episodes", "50", "--quiet")
    assert code == 0, err
    assert json.loads((run / "eval" / "test_3w1s_seed0.json").read_text())["way"] == 3
    code, out, err = run_main(capsys, "eval", "--run", run, "--episodes", "50", "--way", "2", "--quiet")
    assert code == 0 and (run / "eval" / "test_2w1s_seed0.json").is_file()
    code, out, err = run_main(capsys, "eval", "--run", run, "--way", "5", "--quiet")
    assert code == 2 and "split 'test' has 3 classes: give --way 3 (or lower)" in err
    assert len(err.strip().splitlines()) == 1


def test_a_way_larger_than_the_split_is_one_line_and_val_none_is_explicit(project, capsys):
    code, out, err = run_main(capsys, "train", "--dataset", "mine", "--way", "5", *SMALL)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(r"split 'train' has 3 classes.*give --way 3", err), err
    code, out, err = run_main(capsys, "train", "--dataset", "mine", "--val", "none", "--way", "2", "--queries", "2",
                              *SMALL)
    assert code == 0, err
    assert "note:" not in err  # asked for: nothing to say
    code, out, err = run_main(capsys, "train", "--dataset", "mine", "--val", "sometimes", *SMALL)
    assert code == 2 and "--val sometimes: use one of val, none" in err


def test_a_val_split_too_small_for_the_way_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "cache" / "v" / "tiny", per_class=6, classes={"train": 4, "val": 2, "test": 2})
    code, out, err = run_main(capsys, "train", "--dataset", "v", *SMALL)
    assert code == 2 and "split 'val' has 2 classes: give --way 2" in err, err
