"""`mdmf train --log csv|tensorboard|wandb`: the trackers get exactly the rows of metrics.jsonl, once per step, also
across a resume from a checkpoint older than the last rows written (a crash)."""

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.runs import read_curves
from mdmf.pipeline.train.loop import train
from mdmf.pipeline.train.tracking import check_trackers, open_trackers, tracker_names
from synthetic import SMALL_HEADS, small_train_config

SMALL = SMALL_HEADS


@pytest.fixture(scope="module")
def store(train_store):
    return train_store


def cfg(store, run_dir, **kw):
    return small_train_config(store, run_dir, **{"val_episodes": 40, **kw})


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def assert_csv_is_the_jsonl(run: Path):
    curves = read_curves(run / "metrics.jsonl")
    for kind, rows in (("train", curves.train), ("val", curves.val)):
        header, cells = read_csv(run / f"{kind}.csv")
        assert header == list(rows[0]), kind  # step first, then the fields in metrics.jsonl's order
        assert len(cells) == len(rows)
        for row, cell in zip(rows, cells):
            # exactly the same numbers: the text of each cell parses to the JSON value, bit for bit
            assert {k: float(cell[k]) for k in row} == {k: float(v) for k, v in row.items()}, (kind, row["step"])
            assert cell["step"] == str(row["step"])
    return curves


def test_csv_holds_the_rows_of_metrics_jsonl(store, tmp_path):
    train(cfg(store, tmp_path / "run", log=("csv",)))
    curves = assert_csv_is_the_jsonl(tmp_path / "run")
    assert [r["step"] for r in curves.train] == [1, 2, 3, 4, 5, 6] and [r["step"] for r in curves.val] == [3, 6]
    header, _ = read_csv(tmp_path / "run" / "train.csv")
    assert header[:4] == ["step", "episodes", "lr", "loss"] and "train_accuracy" in header and "ce" in header
    assert read_csv(tmp_path / "run" / "val.csv")[0] == ["step", "val_accuracy", "val_ci95"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["log"] == ["csv"]


def _crashed_after_checkpoint(store, run: Path, log: tuple) -> None:
    """A run whose last.pt is at step 3 but whose files hold rows up to step 5 (as after a kill -9 at step 5)."""
    train(cfg(store, run, steps=3, log=log))
    shutil.copy(run / "last.pt", run / "step3.pt")
    train(cfg(store, run, log=log), resume=True, steps=5)
    shutil.move(run / "step3.pt", run / "last.pt")


def test_csv_after_a_resume_from_an_older_checkpoint_holds_each_step_once(store, tmp_path):
    _crashed_after_checkpoint(store, tmp_path / "run", ("csv",))
    assert [int(r["step"]) for r in read_csv(tmp_path / "run" / "train.csv")[1]] == [1, 2, 3, 4, 5]
    train(cfg(store, tmp_path / "run", log=("csv",)), resume=True, steps=6)
    curves = assert_csv_is_the_jsonl(tmp_path / "run")
    assert [r["step"] for r in curves.train] == [1, 2, 3, 4, 5, 6] and [r["step"] for r in curves.val] == [3, 6]  # 5: dropped with its run


def test_csv_added_on_resume_gets_the_whole_run_and_a_new_field_widens_the_header(store, tmp_path):
    run = tmp_path / "run"
    train(cfg(store, run, steps=3))
    assert not (run / "train.csv").exists()
    train(cfg(store, run, log=("csv",)), resume=True, steps=6)
    assert [r["step"] for r in assert_csv_is_the_jsonl(run).train] == [1, 2, 3, 4, 5, 6]
    trackers = open_trackers(["csv"], run)
    trackers.log("train", {"step": 7, "loss": 0.5, "extra": 0.25})
    header, rows = read_csv(run / "train.csv")
    assert header[-1] == "extra" and rows[-1]["extra"] == "0.25" and rows[0]["extra"] == ""
    assert rows[0]["loss"] == repr(read_curves(run / "metrics.jsonl").train[0]["loss"])  # old rows kept as written


def test_tracker_names_and_missing_packages(monkeypatch, store, tmp_path):
    assert tracker_names(["csv", "tensorboard,csv", " wandb "]) == ("csv", "tensorboard", "wandb")
    with pytest.raises(MdmfError, match="--log mlflow: unknown tracker; use csv, tensorboard, wandb"):
        tracker_names(["mlflow"])
    for name in ("tensorboard", "wandb"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
        with pytest.raises(MdmfError, match=rf"--log {name} needs the {name} package.*pip install 'mdmf\[{name}\]'"):
            check_trackers(["csv", name])
        with pytest.raises(MdmfError, match=f"pip install 'mdmf\\[{name}\\]'"):
            train(cfg(store, tmp_path / name, log=(name,)))
        assert not (tmp_path / name).exists()  # said before the run folder was made: the same command works later


def test_cli_log_option(store, tmp_path):
    """The real command line: `--log csv` works; an unknown tracker and a missing package are one red line, exit 2."""
    import subprocess

    args = ["train", "--cache", str(store.path), "--runs", str(tmp_path), "--steps", "2", "--episodes-per-step", "2",
            "--batch-episodes", "2", "--val-every", "2", "--val-episodes", "20", "--set", "heads=4", "--set",
            "mlp_dim=64", "--device", "cpu", "--threads", "1", "--quiet"]
    # `wandb` made unimportable, as on a machine without it (whether or not this one has it)
    main = "import sys; sys.modules['wandb'] = None; sys.argv[0] = 'mdmf'; from mdmf.cli.main import main; main()"
    run = lambda *extra: subprocess.run([sys.executable, "-c", main, *args, *extra], capture_output=True,  # noqa: E731
                                        text=True, timeout=300)
    done = run("--name", "a", "--log", "csv")
    assert done.returncode == 0, done.stderr
    assert_csv_is_the_jsonl(tmp_path / "a")
    bogus = run("--name", "b", "--log", "bogus")
    assert bogus.returncode == 2 and "--log bogus: unknown tracker" in bogus.stderr
    missing = run("--name", "c", "--log", "csv", "--log", "wandb")
    assert missing.returncode == 2 and "pip install 'mdmf[wandb]'" in missing.stderr
    for proc in (bogus, missing):
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def _tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(run: Path) -> dict[str, list[tuple[int, float]]]:
    curves = read_curves(run / "metrics.jsonl")
    out: dict[str, list] = {}
    for kind, rows in (("train", curves.train), ("val", curves.val)):
        for row in rows:
            for key, value in row.items():
                if key != "step":  # TensorBoard keeps float32
                    out.setdefault(f"{kind}/{key.removeprefix(kind + '_')}", []).append(
                        (row["step"], float(np.float32(value))))
    return out


def test_tensorboard_event_files_hold_the_same_scalars_also_after_a_resume(store, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run = tmp_path / "run"
    _crashed_after_checkpoint(store, run, ("tensorboard",))
    train(cfg(store, run, log=("tensorboard",)), resume=True, steps=6)
    got = _tensorboard_scalars(run / "tensorboard")
    want = _expected(run)
    assert set(got) == set(want) and "train/loss" in got and "val/accuracy" in got and "train/accuracy" in got
    assert not any(t.startswith("val/val_") or t.startswith("train/train_") for t in got)
    for tag in want:
        assert got[tag] == want[tag], tag  # each step once, steps 4 and 5 as the resumed run computed them


def test_tensorboard_added_on_resume_gets_the_earlier_rows(store, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run = tmp_path / "run"
    train(cfg(store, run, steps=3))
    train(cfg(store, run, log=("csv", "tensorboard")), resume=True, steps=6)
    assert _tensorboard_scalars(run / "tensorboard") == _expected(run)
    assert_csv_is_the_jsonl(run)


def test_wandb_offline(store, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (it is no test dependency)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "mdmf-test")
    logged = []
    Run = getattr(wandb, "Run", None) or wandb.sdk.wandb_run.Run  # older wandb: only under wandb.sdk
    original = Run.log

    def spy(self, data, step=None, **kw):  # what reaches W&B's own log, which then writes the offline run
        logged.append((step, dict(data)))
        return original(self, data, step=step, **kw)

    monkeypatch.setattr(Run, "log", spy)
    run = tmp_path / "run"
    train(cfg(store, run, log=("wandb",)))
    curves = read_curves(run / "metrics.jsonl")
    want = [(r["step"], {f"train/{k.removeprefix('train_')}": v for k, v in r.items() if k != "step"})
            for r in curves.train]
    want += [(r["step"], {f"val/{k.removeprefix('val_')}": v for k, v in r.items() if k != "step"}) for r in curves.val]
    assert sorted(logged, key=lambda s: (s[0], list(s[1])[0])) == sorted(want, key=lambda s: (s[0], list(s[1])[0]))
    run_id = (run / "wandb-id").read_text().strip()
    assert list((run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
