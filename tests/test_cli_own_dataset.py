"""Your own videos, first try (issue 22): a class-folder tree with 3 train and 3 test classes, no val split and no
info.json goes through check-data, extract, train, eval --run, report and predict with no option beyond --dataset,
--splits, --root and the backbone, and every command uses the same way and shot. (One exception: train gets
`--steps 4`; its default 300 steps took 90 s of this test and set no way, shot or query count.)"""

import json
from pathlib import Path

import pytest

from clirun import run_main
from videogen import write_video

TRAIN = ["ApplyEyeMakeup", "brush_hair", "JumpRope"]
TEST = ["PlayingPiano", "ride_bike", "walk"]
PER_CLASS = 5  # the user's 5 clips per class: fewer than 1 shot + 5 queries


def write_tree(base: Path) -> tuple[Path, Path]:
    """`base/videos/<class>/<id>.mp4` and `base/splits/{train,test}{,_classes}.txt` written by hand, no info.json."""
    root, splits = base / "videos", base / "splits"
    splits.mkdir(parents=True)
    for split, names in (("train", TRAIN), ("test", TEST)):
        lines = []
        for name in names:
            for j in range(PER_CLASS):
                write_video(root / name / f"{name}_{j}.mp4", 16 + j)
                lines.append(f"{name}\t{name}_{j}")
        (splits / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (splits / f"{split}_classes.txt").write_text("\n".join(names) + "\n")
    return root, splits


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    base = tmp_path_factory.mktemp("own")
    root, splits = write_tree(base)
    return base, root, splits


def test_the_whole_sequence_agrees_on_way_and_shot(own, capsys, monkeypatch):
    base, root, splits = own
    monkeypatch.chdir(base)  # cache/ and runs/ are made here, as in a user's project folder
    data = ["--dataset", "mydata", "--splits", splits]

    code, out, err = run_main(capsys, "check-data", *data, "--root", root)
    assert code == 0, out + err
    assert "no info.json" in err and "flip augmentation is on" in err and err.count("no info.json") == 1
    assert "train: 3-way 1-shot episodes with 4 queries per class fit" in out.replace("\n", " ")

    code, out, err = run_main(capsys, "extract", *data, "--root", root, "--backbone", "tiny")
    assert code == 0, out + err
    assert (base / "cache" / "mydata" / "tiny" / "zarr.json").is_file()

    code, out, err = run_main(capsys, "train", *data[:2], "--steps", "4")
    assert code == 0, out + err
    said = [line for line in err.splitlines() if "training 3-way 1-shot with 4 queries" in line]
    assert len(said) == 1, err
    assert sum("no val split" in line for line in err.splitlines()) == 1, err
    run = base / "runs" / "mydata-mdmf-3w1s"
    saved = json.loads((run / "config.json").read_text())["train"]
    assert (saved["way"], saved["shot"], saved["queries"], saved["val"]) == (3, 1, 4, "none")
    assert (run / "best.pt").is_file()

    code, out, err = run_main(capsys, "eval", "--run", run)
    assert code == 0, out + err
    evaluated = json.loads((run / "eval" / "test_3w1s_seed0.json").read_text())
    assert (evaluated["way"], evaluated["shot"]) == (3, 1)

    code, out, err = run_main(capsys, "report", "--run", run)
    assert code == 0, out + err
    report = json.loads((run / "report" / "report.json").read_text())
    assert (report["evaluation"]["way"], report["evaluation"]["shot"]) == (3, 1)
    assert report["evaluation"]["accuracy"] == pytest.approx(evaluated["accuracy"])  # the eval's own file, reused

    support = base / "support"
    for name in TEST:
        write_video(support / name / "a.mp4", 18)
    code, out, err = run_main(capsys, "predict", "--run", run, "--support", support, "--query",
                              root / TEST[0] / f"{TEST[0]}_4.mp4", "--json", base / "p.json")
    assert code == 0, out + err
    predicted = json.loads((base / "p.json").read_text())
    assert len(predicted["classes"]) == 3
