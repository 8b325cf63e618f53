"""Every writer and its file system, through the real `mdmf` entry point: a read-only target (`extract --out`,
`train --runs`, `eval --out`, `report --out`, `cache export --to`), a file where a folder should be, a zero-byte
checkpoint, a 300-character video id, and a full disk during `train` and during `cache export`. Each ends in one
line and exit 2 (a missing video is recorded, exit 0), nothing half-written is left, and the work done is kept.

Read-only: chmod where the tests do not run as root (root writes anyway), else a read-only tmpfs, else skipped. Full
disk: a small tmpfs where the tests may mount, else (train) the failed write is injected as torch reports it."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from clirun import run_main
from conftest import MICRO_CONFIG
from mdmf.pipeline.core.checkpoint import load_checkpoint
from mdmf.pipeline.features.store import FeatureStore
from synthetic import make_store, tiny_run

REPO = Path(__file__).resolve().parents[1]


def refused(result, *words: str) -> str:
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err and all(w in lines[0] for w in words), lines
    return lines[0]


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A tmpfs of `size` mounted at `path` (skips the test where mounting is not allowed)."""
    path.mkdir(exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def may_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with tmpfs(folder, "1m", read_only=True):
        yield folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("writers")
    store = make_store(base / "store", per_class=8)
    return tiny_run(store.path, base / "run"), store.path


def eval_args(run, *more):
    return ["eval", "--run", run.path, "--episodes", "3", "--queries", "1", "--device", "cpu", "--quiet", *more]


def test_read_only_targets_are_one_line_before_any_work(read_only, run, small_dataset, capsys):
    (trained, store), (root, splits) = run, small_dataset
    why = "read-only file system" if os.geteuid() == 0 else "no permission"
    eval_before = sorted(trained.path.rglob("*"))
    refused(run_main(capsys, "extract", "--dataset", "small", "--root", root, "--splits", splits, "--out",
                     read_only / "s", "--backbone", MICRO_CONFIG, "--weights", "random", "--workers", "0",
                     "--quiet"), "--out", "cannot write into", why)
    refused(run_main(capsys, "train", "--cache", store, "--runs", read_only, "--name", "r", "--steps", "1",
                     "--device", "cpu", "--quiet"), "--runs", why)
    refused(run_main(capsys, *eval_args(trained, "--out", read_only / "eval")), "--out", why)
    refused(run_main(capsys, "report", "--run", trained.path, "--out", read_only / "report", "--quiet"), "--out", why)
    refused(run_main(capsys, "cache", "export", store, "--to", read_only / "x.h5"), "--to", why)
    assert list(read_only.iterdir()) == [] and sorted(trained.path.rglob("*")) == eval_before


def test_a_file_where_a_folder_should_be(tmp_path, run, capsys):
    trained, store = run
    afile = tmp_path / "afile"
    afile.write_bytes(b"")
    refused(run_main(capsys, "train", "--cache", store, "--runs", afile, "--name", "r", "--steps", "1", "--device",
                     "cpu", "--quiet"), "--runs", "is a file, not a folder")
    refused(run_main(capsys, *eval_args(trained, "--out", afile)), "--out", "is a file, not a folder")
    refused(run_main(capsys, "report", "--run", trained.path, "--out", afile, "--quiet"), "--out",
            "is a file, not a folder")
    assert afile.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_zero_byte_checkpoint(tmp_path, run, capsys):
    trained, _ = run
    copy = tmp_path / "run"
    shutil.copytree(trained.path, copy)
    (copy / "best.pt").write_bytes(b"")
    refused(run_main(capsys, "eval", "--run", copy, "--episodes", "3", "--device", "cpu", "--quiet"),
            "best.pt", "empty (0 bytes")
    refused(run_main(capsys, "report", "--run", copy, "--quiet"), "best.pt", "empty (0 bytes")
    assert not (copy / "eval").exists() and not (copy / "report").exists()


def test_a_300_character_video_id_is_a_missing_video(small_dataset, tmp_path, capsys):
    root, splits = small_dataset
    mine = tmp_path / "splits"
    shutil.copytree(splits, mine)
    lines = (mine / "test.txt").read_text().splitlines()
    cls = lines[1].split("\t")[0]
    lines[1] = f"{cls}\t{'x' * 300}"
    (mine / "test.txt").write_text("\n".join(lines) + "\n")
    code, _, err = run_main(capsys, "extract", "--dataset", "small", "--root", root, "--splits", mine, "--out",
                            tmp_path / "s", "--backbone", MICRO_CONFIG, "--weights", "random", "--workers", "0",
                            "--split", "test", "--quiet")
    assert code == 0 and "Traceback" not in err, err
    store = FeatureStore.open(tmp_path / "s")
    assert store.progress()["test"]["failed"] == 1 and store.failures("test")[0][0] == "x" * 300


def _fill_after(calls: int):
    """torch.save as on a full disk from its `calls`-th call on: some bytes written, then torch's RuntimeError with
    the ENOSPC as its context."""
    import torch

    real, seen = torch.save, []

    def save(obj, f, *a, **k):
        seen.append(1)
        if len(seen) < calls:
            return real(obj, f, *a, **k)
        f.write(b"PK\x03\x04partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    return save


def test_a_full_disk_during_train_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    store = make_store(tmp_path / "store", per_class=8).path
    args = ["train", "--cache", store, "--name", "r", "--steps", "3", "--val-every", "1", "--val-episodes", "5",
            "--queries", "1", "--set", "heads=4", "--set", "mlp_dim=64", "--device", "cpu", "--quiet"]
    if may_mount():
        probe = tiny_run(store, tmp_path / "probe")
        last, best = probe.last.stat().st_size, probe.best.stat().st_size
        runs = tmp_path / "disk"
        with tmpfs(runs, "64m"):
            filler = runs / "filler"  # room for step 1's last.pt and best.pt and half a checkpoint more
            filler.write_bytes(b"\0" * (shutil.disk_usage(runs).free - (last + best + last // 2)))
            line = refused(run_main(capsys, *args, "--runs", runs), "no space left", "last.pt, step 1", "--resume")
            _check_kept(runs / "r")
            filler.unlink()
            code, _, err = run_main(capsys, *args, "--runs", runs, "--resume")
            assert code == 0, err
            assert load_checkpoint(runs / "r" / "last.pt")["step"] == 3
    else:
        runs = tmp_path / "runs"
        monkeypatch.setattr("mdmf.pipeline.core.checkpoint.torch.save", _fill_after(3))  # step 1: last, best
        line = refused(run_main(capsys, *args, "--runs", runs), "no space left", "last.pt, step 1", "--resume")
        _check_kept(runs / "r")
    assert "enforce fail" not in line


def _check_kept(run: Path) -> None:
    assert load_checkpoint(run / "last.pt")["step"] == 1 and load_checkpoint(run / "best.pt")["step"] >= 1
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no half-written checkpoint left


def test_a_full_disk_during_export_is_one_line_not_a_segfault(tmp_path):
    """HDF5 meeting ENOSPC while it flushes its metadata broke the library: exit 139 after the right line. At three
    sizes of disk (the failure comes at a different write each time) the export now ends in one line."""
    if not may_mount():
        pytest.skip("needs a small tmpfs (test_core_paths injects the Python-level failure)")
    store = make_store(tmp_path / "store", per_class=2).path
    whole = tmp_path / "whole.h5"
    assert subprocess.run([sys.executable, "-m", "mdmf", "cache", "export", str(store), "--to", str(whole)],
                          cwd=REPO, capture_output=True, timeout=120).returncode == 0
    for fraction in (0.3, 0.6, 0.9):
        disk = tmp_path / f"disk{fraction}"
        with tmpfs(disk, f"{int(whole.stat().st_size * fraction) // 4096 * 4 or 4}k"):
            proc = subprocess.run([sys.executable, "-m", "mdmf", "cache", "export", str(store), "--to",
                                   str(disk / "x.h5")], cwd=REPO, capture_output=True, text=True, timeout=120)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert proc.returncode == 2 and len(lines) == 1 and "no space left" in lines[0], proc.stderr
            assert list(disk.iterdir()) == []  # no .partial left
