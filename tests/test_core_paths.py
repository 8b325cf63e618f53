"""File-system edges through the real `mdmf` entry point (`mdmf.cli.main.main`, in this process where nothing needs
a process of its own): every one ends in one red line and exit 2, nothing is created where it should not be, and
nothing already there is lost. Plus the path rules of `pipeline/core/paths.py` themselves."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from clirun import run_main
from conftest import MICRO_CONFIG
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.paths import escapes, is_disk_full, local_path, run_name_path
from mdmf.pipeline.features.store import FeatureStore
from synthetic import make_store

REPO = Path(__file__).resolve().parents[1]


def mdmf(capsys, *args) -> tuple[int, list[str]]:
    """Run the console script's `main` with these arguments; (exit code, the non-empty lines of stderr)."""
    code, _, err = run_main(capsys, *args)
    return code, [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING:")]


def one_red_line(code: int, lines: list[str], *words: str) -> str:
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "Traceback" not in lines[0] and all(w in lines[0] for w in words), lines
    return lines[0]


def extract_args(root, splits, out, *more):
    return ["extract", "--dataset", "small", "--root", root, "--splits", splits, "--out", out, "--backbone",
            MICRO_CONFIG, "--weights", "random", "--chunk-videos", "1", "--workers", "0", "--quiet", *more]


def test_locations_urls_and_names():
    assert local_path("cache/toy") == Path("cache/toy") and local_path("C:/x") == Path("C:/x")
    assert local_path("file:///tmp/a%20b") == Path("/tmp/a b") == local_path("file:/tmp/a b")  # pathlib's form too
    for url in ("s3://bucket/st", "s3:/bucket/st", "gs://b/x", "memory://st", "file://otherhost/x"):
        with pytest.raises(MdmfError, match=r"^--out [a-z0-9]+://"):
            local_path(url)
    assert not any(escapes(n) for n in ("a", "a/b", "x..y", "brush_hair", "Pouring [something] into [something]"))
    assert all(escapes(n) for n in ("..", "../x", "a/../../x", "/etc/passwd", "C:/x", "a\\..\\b"))
    assert run_name_path("runs", "r1") == Path("runs/r1")
    for bad in ("../../x", "/tmp/x", "a/b", "..", ""):
        with pytest.raises(MdmfError, match="--name"):
            run_name_path("runs", bad)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device")) and not is_disk_full(OSError(2, "gone"))
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as err:
            raise RuntimeError("wrapped") from err
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)


def test_extract_out_urls_never_make_a_local_folder(small_dataset, tmp_path, monkeypatch, capsys):
    root, splits = small_dataset
    monkeypatch.chdir(tmp_path)
    for url, scheme in (("s3://bucket/st", "s3://"), ("memory://st", "memory://"), ("gs://b/st", "gs://")):
        one_red_line(*mdmf(capsys, *extract_args(root, splits, url, "--split", "test")), scheme, "not supported")
    assert list(tmp_path.iterdir()) == []  # no `s3:`, `memory:`, `gs:` folder, nothing else either
    code, lines = mdmf(capsys, *extract_args(root, splits, f"file://{tmp_path}/st", "--split", "test"))
    assert code == 0, lines
    assert FeatureStore.open(tmp_path / "st").progress()["test"]["ok"] == 6
    assert FeatureStore.open(f"file://{tmp_path}/st").path == tmp_path / "st"  # readers take the URL too
    code, _ = mdmf(capsys, "cache", "info", f"file://{tmp_path}/st")
    assert code == 0
    one_red_line(*mdmf(capsys, "cache", "info", "s3://bucket/st"), "s3://")


def test_extract_never_writes_over_or_into_something_else(small_dataset, tmp_path, capsys):
    root, splits = small_dataset
    text = tmp_path / "existing.txt"
    text.write_text("precious")
    one_red_line(*mdmf(capsys, *extract_args(root, splits, text)), "exists and is not a feature store")
    one_red_line(*mdmf(capsys, *extract_args(root, splits, text / "sub")), "is a file, not a folder")
    assert text.read_text() == "precious"
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.md").write_text("keep")
    one_red_line(*mdmf(capsys, *extract_args(root, splits, folder)), "exists and is not a feature store")
    assert [p.name for p in folder.iterdir()] == ["notes.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt", "mine"]  # no hidden creation folder left


def test_unreadable_weights_files_are_one_line(small_dataset, tmp_path, capsys):
    root, splits = small_dataset
    junk, empty, garbage = tmp_path / "junk.pt", tmp_path / "empty.pt", tmp_path / "garbage.pt"
    junk.write_text("junk\n")
    empty.write_bytes(b"")
    garbage.write_bytes(bytes(range(256)) * 8)
    for weights in (junk, empty, garbage):
        args = extract_args(root, splits, tmp_path / "s")
        args[args.index("random")] = weights
        one_red_line(*mdmf(capsys, *args), "could not build", str(weights))
    assert not (tmp_path / "s").exists()


def test_split_entries_cannot_leave_the_root(tmp_path, capsys):
    from videogen import write_video

    outside = write_video(tmp_path / "outside" / "secret.mp4", 20)
    root, splits = tmp_path / "videos", tmp_path / "splits"
    for name in ("a", "b"):
        write_video(root / name / f"{name}0.mp4", 20)
    splits.mkdir()
    (splits / "info.json").write_text(json.dumps({"name": "x", "layout": "class_folders", "flip": True}))
    (splits / "test_classes.txt").write_text("a\nb\n")
    for entry in ("../outside/secret", str(outside.with_suffix("")), "../../x/secret"):
        (splits / "test.txt").write_text(f"a\ta0\nb\t{entry}\n")
        line = one_red_line(*mdmf(capsys, *extract_args(root, splits, tmp_path / "s")), "test.txt:2")
        assert "climbs" in line
    (splits / "test.txt").write_text("a\ta0\n..\tb0\n")
    (splits / "test_classes.txt").write_text("a\n..\n")
    one_red_line(*mdmf(capsys, *extract_args(root, splits, tmp_path / "s")), "class name")
    assert not (tmp_path / "s").exists()


def test_a_dataset_with_only_some_splits_extracts_those(small_dataset, tmp_path, capsys):
    root, splits = small_dataset
    only_test = tmp_path / "splits"
    only_test.mkdir()
    for name in ("info.json", "test.txt", "test_classes.txt"):
        shutil.copy(splits / name, only_test / name)
    one_red_line(*mdmf(capsys, *extract_args(root, only_test, tmp_path / "s", "--split", "val")),
                 "no split 'val'", "it has test")
    code, lines = mdmf(capsys, *extract_args(root, only_test, tmp_path / "s"))
    assert code == 0, lines
    store = FeatureStore.open(tmp_path / "s")
    assert store.splits == ["test"] and store.progress()["test"] == {"total": 6, "pending": 0, "ok": 6, "failed": 0,
                                                                       "short": 0}
    assert store.meta["config"]["splits"] == ["test"]


def test_train_name_stays_inside_runs(tmp_path, capsys):
    store = make_store(tmp_path / "store")
    for name in ("../../x", str(tmp_path / "abs"), "a/b"):
        one_red_line(*mdmf(capsys, "train", "--cache", store.path, "--runs", tmp_path / "runs", "--name", name,
                           "--steps", "1", "--device", "cpu", "--quiet"), "--name", "inside --runs")
    one_red_line(*mdmf(capsys, "train", "--cache", store.path, "--runs", "s3://b/runs", "--name", "r",
                       "--steps", "1", "--device", "cpu", "--quiet"), "--runs s3://")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_cache_export_edges(tmp_path, capsys, monkeypatch):
    store = make_store(tmp_path / "store", per_class=2)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "adir"
    folder.mkdir()
    one_red_line(*mdmf(capsys, "cache", "export", store.path, "--to", folder), "is a folder")
    assert list(folder.iterdir()) == []  # no .partial left in it or beside it
    precious = tmp_path / "precious.txt"
    precious.write_text("do not lose me")
    one_red_line(*mdmf(capsys, "cache", "export", store.path, "--to", precious), "--force")
    assert precious.read_text() == "do not lose me"
    one_red_line(*mdmf(capsys, "cache", "export", store.path, "--to", precious / "x.h5"), "is a file, not a folder")
    one_red_line(*mdmf(capsys, "cache", "export", store.path, "--to", "s3://b/x.h5"), "s3://")

    nested = tmp_path / "nodir" / "sub" / "x.h5"  # missing parents are made, as for every output file
    assert mdmf(capsys, "cache", "export", store.path, "--to", nested)[0] == 0
    assert mdmf(capsys, "cache", "export", store.path, "--to", nested)[0] == 0  # an earlier export is replaced
    assert mdmf(capsys, "cache", "export", store.path, "--to", precious, "--force")[0] == 0
    for path in (nested, precious):
        with h5py.File(path) as f:
            np.testing.assert_array_equal(f["train/features"][:], store.group("train")["features"][:])
    assert sorted(p.name for p in tmp_path.rglob("*.partial")) == []
    assert not any(p.name.startswith(("s3:", "b")) for p in tmp_path.iterdir())


def test_cache_export_on_a_full_disk_removes_its_partial(tmp_path):
    """ENOSPC from h5py's dataset write (HDF5 reports a full disk as an OSError naming it), in the real CLI process:
    one line, the .partial is gone, an earlier export under the name is untouched, the store is unchanged."""
    store = make_store(tmp_path / "store", per_class=2)
    out = tmp_path / "x.h5"
    assert subprocess.run([sys.executable, "-m", "mdmf", "cache", "export", str(store.path), "--to", str(out)],
                          cwd=REPO, capture_output=True, timeout=120).returncode == 0
    before = out.read_bytes()
    script = (
        "import errno, h5py, sys\n"
        "real = h5py.Group.create_dataset\n"
        "calls = []\n"
        "def full(self, *a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 3:\n"
        "        raise OSError(errno.ENOSPC, 'Unable to write data (No space left on device)')\n"
        "    return real(self, *a, **k)\n"
        "h5py.Group.create_dataset = full\n"
        "from mdmf.cli.main import main\n"
        f"sys.argv = ['mdmf', 'cache', 'export', {str(store.path)!r}, '--to', {str(out)!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    one_red_line(proc.returncode, lines, "no space left", "nothing was written")
    assert not (tmp_path / "x.h5.partial").exists() and out.read_bytes() == before
    assert FeatureStore.open(store.path).progress()["train"]["ok"] == 16
