"""Extraction's process edges in real `mdmf` processes: a disk that fills up mid-run (ENOSPC from Zarr's own chunk
write) and a main process killed with -9 (its decoding workers must go with it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import MICRO_CONFIG
from mdmf.pipeline.features.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


def extract_argv(root, splits, out, workers=0):
    return ["extract", "--dataset", "small", "--root", str(root), "--splits", str(splits), "--out", str(out),
            "--backbone", str(MICRO_CONFIG), "--weights", "random", "--chunk-videos", "1", "--workers", str(workers),
            "--split", "test", "--quiet"]


def run_cli(argv, prelude: str = "", **kw):
    """`mdmf ARGV` in a fresh Python process, after `prelude` (a patch of the real write path, or nothing)."""
    script = f"{prelude}\nimport sys\nfrom mdmf.cli.main import main\nsys.argv = ['mdmf', *{argv!r}]\nmain()\n"
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, **kw)


# Zarr's LocalStore writes every file through `_put` (temporary file, then rename): the third features chunk of the
# run fails there as a full disk fails the write() inside it.
DISK_FILLS_UP = """
import errno
import zarr.storage._local as local
real, seen = local._put, []
def _put(path, value, exclusive=False):
    if "/features/c/" in str(path):
        seen.append(path)
        if len(seen) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
    return real(path, value, exclusive)
local._put = _put
"""


def test_a_full_disk_says_so_and_the_store_resumes_to_the_uninterrupted_one(small_dataset, tmp_path):
    root, splits = small_dataset
    whole, full = tmp_path / "whole", tmp_path / "full"
    assert run_cli(extract_argv(root, splits, whole)).wait(timeout=300) == 0

    proc = run_cli(extract_argv(root, splits, full), DISK_FILLS_UP, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("WARNING:")]
    assert proc.returncode == 2 and len(lines) == 1, err
    assert "no space left" in lines[0] and "resumable" in lines[0] and "run the same command again" in lines[0]
    progress = FeatureStore.open(full).progress()["test"]
    assert progress["ok"] == 2 and progress["pending"] == 4  # the two units written before the failure are kept
    assert not list(full.rglob("*.partial"))  # no half-written chunk file

    assert run_cli(extract_argv(root, splits, full)).wait(timeout=300) == 0  # disk freed: the same command resumes
    a, b = FeatureStore.open(whole), FeatureStore.open(full)
    for name in ("features", "frame_indices", "status", "errors"):
        np.testing.assert_array_equal(a.group("test")[name][:], b.group("test")[name][:])


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# Each decode takes 3 s, so the workers are mid-video when the parent dies: without anything that ends them with it
# they would finish the video (and look at their parent only then, or after their loader's 5 s poll when idle).
SLOW_DECODE = """
import time
import mdmf.pipeline.data.views as views
real = views.decode_views
def slow(*a, **k):
    time.sleep(3)
    return real(*a, **k)
views.decode_views = slow
import mdmf.pipeline.features.extract as extract
extract.decode_views = slow
"""


def test_decode_workers_exit_with_a_killed_main_process(small_dataset, tmp_path):
    root, splits = small_dataset
    proc = run_cli(extract_argv(root, splits, tmp_path / "s", workers=2), SLOW_DECODE,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: set[int] = set()
    while len(workers) < 2 and proc.poll() is None and time.time() < deadline:
        workers = {c for c in _children(proc.pid) if _alive(c)}
        time.sleep(0.05)
    assert len(workers) >= 2, "the extraction should have started its two decoding workers"
    time.sleep(0.5)  # they are decoding now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.time()
    while any(_alive(w) for w in workers) and time.time() - killed < 5:
        time.sleep(0.02)
    gone_after = time.time() - killed
    assert not any(_alive(w) for w in workers), "workers outlived their killed parent by 5 s"
    assert gone_after < 1.0, f"workers took {gone_after:.2f} s to exit"
