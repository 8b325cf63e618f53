"""Progress where no one watches a terminal (a cluster job's log file): plain, flushed lines with rate and ETA while
the work runs, never cut to a width."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.progress import progress_bar, progress_every, progress_line
from synthetic import make_store

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^train head: (\d+)/400 steps \(\d+\.\d %\), ([\d.e+]+) steps/s, elapsed \d+:\d\d:\d\d, "
                  r"ETA \d+:\d\d:\d\d, loss=[\d.e+-]+ acc=[\d.e+-]+$")


def test_the_line_says_done_total_rate_eta_and_fields():
    line = progress_line("extract", 30, 120, "videos", 2.0, 15.0, {"loss": 0.123456, "split": "train"})
    assert line == ("extract: 30/120 videos (25.0 %), 2 videos/s, elapsed 0:00:15, ETA 0:00:45, loss=0.1235 "
                    "split=train")
    assert progress_line("x", 5, 5, "steps", 1.0, 3725.0, {}) == "x: 5/5 steps (100.0 %), 1 steps/s, elapsed 1:02:05"


def test_the_interval_comes_from_the_environment(monkeypatch, capsys):
    monkeypatch.delenv("MDMF_PROGRESS_EVERY", raising=False)
    assert progress_every() == 30.0
    monkeypatch.setenv("MDMF_PROGRESS_EVERY", "0")
    assert progress_every() == 0.0
    with progress_bar(True, "count", total=3, unit="items", completed=1) as advance:  # captured stdout: no terminal
        advance(1, a=1)
        advance(1, a=2)
    lines = capsys.readouterr().out.splitlines()
    # every advance; the last line is not written again when the last advance already said it (it was, twice)
    assert [line.split(",")[0] for line in lines] == ["count: 2/3 items (66.7 %)", "count: 3/3 items (100.0 %)"]
    assert lines[-1].endswith("a=2")
    monkeypatch.setenv("MDMF_PROGRESS_EVERY", "soon")
    with pytest.raises(MdmfError, match="MDMF_PROGRESS_EVERY"):
        progress_every()


def test_training_with_stdout_to_a_pipe_prints_plain_lines_while_it_runs(tmp_path):
    """The real CLI, stdout a pipe: lines with rate and ETA arrive while training runs, longer than 80 columns and
    whole; the step counts rise; stopping it (SIGTERM) still writes a last line."""
    store = make_store(tmp_path / "store")
    args = [sys.executable, "-m", "mdmf", "train", "--stage", "head", "--cache", str(store.path), "--runs",
            str(tmp_path), "--name", "piped", "--set", "heads=4", "--set", "mlp_dim=64", "--steps", "400",
            "--episodes-per-step", "4", "--batch-episodes", "2", "--val-every", "1000", "--val-episodes", "20",
            "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MDMF_PROGRESS_EVERY": "0.3", "COLUMNS": "80"}
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    early, deadline = [], time.time() + 120
    stepped = lambda: [x for x in early if not x.startswith("train head: 0/")]  # noqa: E731 - heartbeats aside
    while len(stepped()) < 2 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        early.append(line.rstrip("\n"))
    running = proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=120)
    assert running, (early, err)  # the lines came while it ran, not at the end
    assert proc.returncode == 143, err
    lines = early + rest.splitlines()
    # a heartbeat before the first step (elapsed only) may come first: progress from the first second
    progress = [line for line in lines if line.startswith("train head:") and not line.startswith("train head: 0/")]
    assert len(progress) >= 3 and all(LINE.match(line) for line in progress), lines
    assert all(len(line) > 80 for line in progress)
    done = [int(LINE.match(line).group(1)) for line in progress]
    assert done == sorted(done) and 0 < done[0] and done[-1] < 400


def test_a_heartbeat_comes_when_nothing_advances_and_the_last_line_once(monkeypatch, capsys):
    """Off a terminal: a long unit of work (no advance for several intervals) still writes lines with the elapsed
    time; the last line follows only when it says something new."""
    monkeypatch.setenv("MDMF_PROGRESS_EVERY", "0.2")
    with progress_bar(True, "extract", total=4, unit="videos") as advance:
        time.sleep(0.9)  # the first batch of a large model: nothing to advance yet
        advance(4)
    lines = capsys.readouterr().out.splitlines()
    beats = [line for line in lines if line.startswith("extract: 0/4 videos")]
    assert len(beats) >= 2 and all("elapsed 0:00:0" in line for line in beats), lines
    assert lines[-1].startswith("extract: 4/4 videos (100.0 %)") and sum("4/4" in line for line in lines) == 1


def test_foreign_log_records_become_our_lines_or_nothing(capsys):
    import logging

    from mdmf.pipeline.core.progress import foreign_logs

    root = logging.getLogger()
    raw = logging.StreamHandler(sys.stderr)  # what a basicConfig elsewhere installs: WARNING:root:...
    raw.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root.addHandler(raw)
    try:
        with foreign_logs(show=True):
            logging.warning("No pretrained weights loaded for model 'ViT-B-16'")
            logging.getLogger("timm.models").warning("a named logger")
            logging.info("not shown: below WARNING")
        err = capsys.readouterr().err
        assert "WARNING:root:" not in err
        assert "warning: open_clip: No pretrained weights loaded for model 'ViT-B-16'" in err
        assert "warning: timm.models: a named logger" in err and "below WARNING" not in err
        with foreign_logs(show=False):  # --quiet
            logging.warning("silenced")
        assert "silenced" not in capsys.readouterr().err
        assert root.handlers[-1] is raw  # put back
        logging.warning("after")
        assert "WARNING:root:after" in capsys.readouterr().err
    finally:
        root.removeHandler(raw)
