"""`check_data` and `mdmf check-data` on a temp root of real small videos, a 0-byte, a garbage and a missing file."""

from __future__ import annotations

import json
import faulthandler
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from videogen import write_video

import mdmf.pipeline.data.check_data
from mdmf.cli.tables import print_check_data
from mdmf.pipeline.data.check_data import check_data, probe_video
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.splits import load_splits

REPO = Path(__file__).resolve().parent.parent
INFO = {"name": "checkme", "layout": "class_folders", "flip": True, "extensions": ["avi", "mp4"]}


def write_split_folder(folder: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    folder.mkdir(parents=True)
    for split, entries in splits.items():
        (folder / f"{split}.txt").write_text("".join(f"{c}\t{v}\n" for c, v in entries))
        classes = list(dict.fromkeys(c for c, _ in entries))
        (folder / f"{split}_classes.txt").write_text("".join(f"{c}\n" for c in classes))
    (folder / "info.json").write_text(json.dumps(INFO))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(root, bad_splits, good_splits): 3 real videos, a 0-byte file, a garbage file, one listed video not on disk."""
    base = tmp_path_factory.mktemp("check_data")
    root = base / "videos"
    write_video(root / "ApplyEyeMakeup" / "good1.avi", 10)
    write_video(root / "air_drumming" / "good2.mp4", 6)  # class "air drumming", folder with an underscore
    write_video(root / "YoYo" / "good3.mp4", 8)
    (root / "ApplyEyeMakeup" / "empty.avi").write_bytes(b"")
    (root / "ApplyEyeMakeup" / "garbage.avi").write_bytes(b"not a video at all " * 64)
    good = {"train": [("ApplyEyeMakeup", "good1"), ("air drumming", "good2")], "test": [("YoYo", "good3")]}
    bad = {"train": good["train"] + [("ApplyEyeMakeup", "empty"), ("ApplyEyeMakeup", "gone"),
                                     ("ApplyEyeMakeup", "garbage")], "test": good["test"]}
    return root, write_split_folder(base / "bad", bad), write_split_folder(base / "good", good)


def test_counts_examples_and_reasons(data):
    root, bad, _ = data
    report = check_data(load_splits(bad), root, workers=2, progress=False)
    train, test = report.splits["train"], report.splits["test"]
    assert (train.listed, train.found, train.missing, train.unreadable, train.readable) == (5, 4, 1, 2, 2)
    assert (test.listed, test.found, test.missing, test.unreadable, test.readable) == (1, 1, 0, 0, 1)
    assert not report.ok
    assert sorted(train.frames) == [6, 10] and test.frames == [8]
    assert train.missing_examples == [f"{root}/ApplyEyeMakeup/gone.{{avi,mp4}}"]
    reasons = dict(train.unreadable_examples)
    assert [Path(p).name for p in reasons] == ["empty.avi", "garbage.avi"]  # list order, whatever finished first
    assert "0 bytes" in reasons[str(root / "ApplyEyeMakeup" / "empty.avi")]
    assert reasons[str(root / "ApplyEyeMakeup" / "garbage.avi")]
    assert train.found_examples == [str(root / "ApplyEyeMakeup" / "good1.avi"), str(root / "air_drumming" / "good2.mp4")]
    out = report.to_json()
    assert json.loads(json.dumps(out)) == out
    assert out["splits"]["train"]["frames_min"] == 6 and out["ok"] is False
    console = Console(record=True, width=120)
    print_check_data(report, console)
    text = console.export_text()
    assert "gone" in text and "garbage.avi" in text and "3 of 6 listed videos are missing or unreadable" in text


def test_good_data_and_one_split(data):
    root, bad, good = data
    report = check_data(load_splits(good), root, workers=1, progress=True)
    assert report.ok and report.splits["train"].readable == 2
    only_test = check_data(load_splits(bad), root, progress=False, split_names=["test"])
    assert only_test.ok and list(only_test.splits) == ["test"]
    with pytest.raises(MdmfError, match="no split 'val'"):
        check_data(load_splits(bad), root, progress=False, split_names=["val"])


def test_missing_root_is_a_user_error(data, tmp_path):
    _, bad, _ = data
    with pytest.raises(MdmfError, match="no such folder"):
        check_data(load_splits(bad), tmp_path / "nowhere", progress=False)


def test_any_decoder_exception_is_caught(monkeypatch, tmp_path):
    class DECORDError(Exception):  # decord's own error type is not a RuntimeError
        pass

    def broken(path):
        raise DECORDError("corrupt stream\nlong native trace")

    monkeypatch.setattr(mdmf.pipeline.data.check_data, "open_video", broken)  # the reader check-data calls
    assert probe_video(tmp_path / "x.mp4") == (None, "DECORDError: corrupt stream")


def run_mdmf(*args: str) -> subprocess.CompletedProcess:
    """The real console script of the venv running the tests (falls back to `python -m mdmf`)."""
    script = Path(sys.executable).parent / "mdmf"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mdmf"]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run(command + list(args), capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_cli_exit_codes(data, tmp_path):
    root, bad, good = data
    ok = run_mdmf("check-data", "--dataset", "mine", "--root", str(root), "--splits", str(good), "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert "all 3 listed videos found and readable" in ok.stdout

    report = tmp_path / "out" / "report.json"
    failed = run_mdmf("check-data", "--dataset", "mine", "--root", str(root), "--splits", str(bad), "--quiet",
                  "--json", str(report))
    assert failed.returncode == 1, failed.stderr
    assert "gone" in failed.stdout and "garbage.avi" in failed.stdout
    counts = json.loads(report.read_text())["splits"]["train"]
    assert (counts["missing"], counts["unreadable"], counts["readable"]) == (1, 2, 2)

    no_root = run_mdmf("check-data", "--dataset", "mine", "--root", str(tmp_path / "nowhere"), "--splits", str(good))
    assert no_root.returncode == 2 and "no such folder" in no_root.stderr and "Traceback" not in no_root.stderr
    unknown = run_mdmf("check-data", "--dataset", "nosuchset", "--root", str(root))
    assert unknown.returncode == 2 and "--splits DIR" in unknown.stderr


def test_cli_toy_reads_splits_under_root(tmp_path):
    from typer.testing import CliRunner

    import mdmf.cli.commands  # noqa: F401 - registers the commands
    from mdmf.cli.app import app

    write_video(tmp_path / "toy" / "spin" / "v0.mp4", 4)
    write_split_folder(tmp_path / "toy" / "splits", {"train": [("spin", "v0")]})
    result = CliRunner().invoke(app, ["check-data", "--dataset", "toy", "--root", str(tmp_path / "toy"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "all 1 listed videos found and readable" in result.output


def test_a_file_that_crashes_the_decoder_is_recorded_and_the_rest_are_checked(data, monkeypatch, tmp_path):
    import mdmf.pipeline.data.check_data as cd

    root, _, _ = data
    entries = [("ApplyEyeMakeup", "good1"), ("air drumming", "good2"), ("ApplyEyeMakeup", "garbage"),
               ("YoYo", "good3")]
    entries += [(f"c{i}", "boom") for i in range(2)]  # two files that kill the process that opens them
    for i in range(2):
        (root.parent / "crash" / f"c{i}").mkdir(parents=True, exist_ok=True)
        (root.parent / "crash" / f"c{i}" / "boom.avi").write_bytes(b"x")
        for c, v in entries[:4]:
            src = root / c.replace(" ", "_") / f"{v}.{'mp4' if v in ('good2', 'good3') else 'avi'}"
            dst = root.parent / "crash" / c.replace(" ", "_") / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    splits = write_split_folder(tmp_path / "splits", {"train": entries[:3] + entries[4:5], "test": entries[3:4] + entries[5:]})
    real_probe = cd.probe_video

    def probe(path):
        if path.name == "boom.avi":
            faulthandler.disable()  # pytest's crash dump, inherited by the fork, would flood the log
            os.abort()  # what decord does on some damaged files
        return real_probe(path)

    monkeypatch.setattr(cd, "probe_video", probe)  # forked workers inherit it
    report = check_data(load_splits(splits), root.parent / "crash", workers=2, progress=False)
    train, test = report.splits["train"], report.splits["test"]
    assert (train.listed, train.readable, train.unreadable, test.readable, test.unreadable) == (4, 2, 2, 1, 1)
    reasons = dict(train.unreadable_examples + test.unreadable_examples)
    assert reasons[str(root.parent / "crash" / "c0" / "boom.avi")] == cd.CRASHED
    assert reasons[str(root.parent / "crash" / "c1" / "boom.avi")] == cd.CRASHED
    assert cd.CRASHED not in reasons[str(root.parent / "crash" / "ApplyEyeMakeup" / "garbage.avi")]
