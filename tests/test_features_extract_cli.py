"""The real `mdmf` entry point in subprocesses: kill -9 and resume, cache info, HDF5 export, error exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import MICRO_CONFIG
from mdmf.pipeline.features.store import FeatureStore

MDMF = [sys.executable, "-m", "mdmf"]
REPO = Path(__file__).resolve().parents[1]


def extract_args(root, splits, out, workers=0):
    return MDMF + ["extract", "--dataset", "small", "--root", str(root), "--splits", str(splits), "--out", str(out),
                   "--backbone", str(MICRO_CONFIG), "--weights", "random", "--chunk-videos", "1", "--workers",
                   str(workers), "--quiet"]


# Zarr's LocalStore writes every chunk file through `_put`: from the (n+1)-th unit on, each unit's status chunk (its
# last write) waits 0.3 s, so a run cannot finish before the signal or kill sent after n units reaches it (on a busy
# machine the polling test process could otherwise wake up after the last unit, and the stop never lands mid-run).
SLOW_AFTER = """
import time
import zarr.storage._local as local
real, seen = local._put, []
def _put(path, value, exclusive=False):
    if "/status/c/" in str(path):
        seen.append(path)
        if len(seen) > {units}:
            time.sleep(0.3)
    return real(path, value, exclusive)
local._put = _put
"""


def slowed_after(units: int, args: list[str]) -> list[str]:
    """`args` (an `mdmf` command line of MDMF + ...) run with the status writes slowed after `units` units."""
    script = (SLOW_AFTER.format(units=units) + "import sys\nfrom mdmf.cli.main import main\n"
              f"sys.argv = ['mdmf', *{args[len(MDMF):]!r}]\nmain()\n")
    return [sys.executable, "-c", script]


def as_a_terminal_starts_it() -> None:
    """In the child before exec: Ctrl-C delivered and at its default, as a shell starts a foreground job. A child
    inherits its parent's signal mask and ignored signals, and in the suite's worker processes SIGINT was sometimes
    found ignored or blocked (the run then finished with exit 0): the test is about mdmf, not about its parent."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def done_units(store: Path) -> int:
    return sum(len(list((store / s / "status" / "c").glob("*"))) for s in ("train", "val", "test")
               if (store / s / "status" / "c").is_dir())


def run(args, **kw):
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, **kw)


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_store(small_dataset, tmp_path):
    root, splits = small_dataset
    assert run(extract_args(root, splits, tmp_path / "whole")).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(slowed_after(3, extract_args(root, splits, killed)), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while done_units(killed) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = FeatureStore.open(killed).progress()
    pending = sum(c["pending"] for c in partial.values())
    assert 0 < pending < 21, "the kill should land mid-run"

    resumed = run(extract_args(root, splits, killed))
    assert resumed.returncode == 0, resumed.stderr
    a, b = FeatureStore.open(tmp_path / "whole"), FeatureStore.open(killed)
    for split in ("train", "val", "test"):
        for name in ("features", "frame_indices", "status", "errors"):
            np.testing.assert_array_equal(a.group(split)[name][:], b.group(split)[name][:])


@pytest.fixture(scope="module")
def whole_store(small_dataset, tmp_path_factory):
    """An uninterrupted extraction, the ground truth of the interrupted-and-resumed ones."""
    root, splits = small_dataset
    out = tmp_path_factory.mktemp("whole") / "store"
    done = run(extract_args(root, splits, out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("name,code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGUSR1", 138)])
def test_a_stop_signal_says_how_to_resume_and_keeps_the_work(small_dataset, whole_store, tmp_path, name, code):
    """Ctrl-C, or a cluster stopping the job, sent to the whole process group as a terminal or Slurm does (the
    decoding worker too): exit 128 + the signal, one line saying how to continue, the finished units kept; the
    rerun completes a store equal to an uninterrupted one."""
    root, splits = small_dataset
    out = tmp_path / "store"
    proc = subprocess.Popen(slowed_after(2, extract_args(root, splits, out, workers=1)), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_a_terminal_starts_it)
    deadline = time.time() + 120
    while done_units(out) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, getattr(signal, name))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (err, signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    told = [line for line in err.splitlines() if "run the same command again to continue" in line]
    assert len(told) == 1 and "interrupted" in told[0] and "finished work is kept" in told[0], err
    assert "Traceback" not in err
    kept = sum(c["total"] - c["pending"] for c in FeatureStore.open(out).progress().values())
    assert 2 <= kept < 21
    resumed = run(extract_args(root, splits, out))
    assert resumed.returncode == 0, resumed.stderr
    assert sum(c["pending"] for c in FeatureStore.open(out).progress().values()) == 0
    a, b = FeatureStore.open(whole_store), FeatureStore.open(out)
    for split in ("train", "val", "test"):
        for field in ("features", "frame_indices", "status", "errors"):
            np.testing.assert_array_equal(a.group(split)[field][:], b.group(split)[field][:])


def test_cache_info_and_export(small_dataset, tmp_path):
    root, splits = small_dataset
    store = tmp_path / "s"
    assert run(extract_args(root, splits, store)).returncode == 0
    info = run(MDMF + ["cache", "info", str(store), "--json", "-"])
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["backbone"]["backbone"] == "mdmf-micro" and len(data["backbone"]["weights_sha256"]) == 64
    assert data["splits"]["train"]["ok"] == 9 and data["splits"]["test"]["classes"] == 2
    table = run(MDMF + ["cache", "info", str(store)])
    assert table.returncode == 0 and "train" in table.stdout and "mdmf-micro" in table.stdout

    h5 = tmp_path / "copy.h5"
    assert run(MDMF + ["cache", "export", str(store), "--to", str(h5)]).returncode == 0
    with h5py.File(h5) as f:
        np.testing.assert_array_equal(f["train/features"][:], FeatureStore.open(store).group("train")["features"][:])
        assert f["test/prompts"][0].decode() == "a photo of playing piano"
        assert json.loads(f.attrs["mdmf"])["dim"] == 16


def test_user_errors_are_one_line_and_exit_2(small_dataset, tmp_path):
    root, splits = small_dataset
    missing = run(MDMF + ["cache", "info", str(tmp_path / "nothing")])
    assert missing.returncode == 2 and "no feature store" in missing.stderr and "Traceback" not in missing.stderr
    bad = run(extract_args(root, splits, tmp_path / "s")[:-1] + ["--quiet", "--backbone", "NoSuchNet"])
    assert bad.returncode == 2 and "unknown backbone" in bad.stderr and "Traceback" not in bad.stderr
    weights = run(MDMF + ["extract", "--dataset", "small", "--root", str(root), "--splits", str(splits),
                          "--backbone", "RN50", "--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x")])
    assert weights.returncode == 2 and "nope.pt" in weights.stderr
