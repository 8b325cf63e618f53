"""The run folder (`mdmf.pipeline.runs.RunDir`) on a real run of `mdmf train`, the one device resolver, the one
default store path, and `mdmf eval` as a request (`mdmf.pipeline.apps.evaluate_run`)."""

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from mdmf.cli.tables import print_eval_result
from mdmf.pipeline.apps.evaluate_run import EvalRequest, evaluate_request
from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.datasets import default_store_path
from mdmf.pipeline.runs import RunDir, read_curves
from mdmf.pipeline.train.loop import TrainConfig, train
from clirun import run_main
from synthetic import make_store


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    store = make_store(base / "store", noise=2.5)
    train(TrainConfig(store=str(store.path), run_dir=str(base / "run"), model={"name": "mdmf", "heads": 4,
                                                                            "mlp_dim": 64},
                      steps=4, episodes_per_step=4, batch_episodes=2, val_every=2, val_episodes=50, progress=False,
                      device="cpu", lr=1e-3))
    return RunDir(base / "run"), store


def test_the_run_folder_files_are_where_rundir_says(run):
    rd, store = run
    assert {p.name for p in rd.path.iterdir()} == {rd.config.name, rd.metrics.name, rd.last.name, rd.best.name}
    assert rd.config == rd.path / "config.json" and rd.metrics == rd.path / "metrics.jsonl"
    assert rd.last == rd.path / "last.pt" and rd.best == rd.path / "best.pt" and rd.visual == rd.path / "visual.pt"
    assert rd.holds_run() and rd.read_config()["train"]["steps"] == 4
    assert rd.eval_path("test", 5, 1, 0) == rd.path / "eval" / "test_5w1s_seed0.json"
    assert rd.eval_path("val", 3, 5, 7, frames=True) == rd.path / "eval" / "val_3w5s_seed7_frames.json"
    assert rd.run_store("test", "ab" * 32) == rd.path / "stores" / "test-abababababab"
    assert rd.trained_steps() == 4 and rd.stage == "head" and Path(rd.store_path) == Path(store.path).resolve()
    curves = rd.read_metrics()
    assert [r["step"] for r in curves.train] == [1, 2, 3, 4] and [r["step"] for r in curves.val] == [2, 4]
    assert read_curves(rd.metrics) == curves


def test_best_pt_is_read_once_per_rundir(run, monkeypatch):
    import mdmf.pipeline.runs as runs

    rd = RunDir(run[0].path)
    reads = []
    real = runs.load_checkpoint
    monkeypatch.setattr(runs, "load_checkpoint", lambda path: reads.append(path) or real(path))
    model, state = rd.load_model()
    again, same = rd.load_model()
    assert again is model and same is state and rd.best_state() is state and reads == [rd.best]
    assert state["step"] in (2, 4)


def test_metrics_are_kept_up_to_a_step_and_appended(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.start({"train": {}})
    for step in (1, 2, 3):
        rd.append_metrics({"step": step, "loss": 1.0})
    rd.append_metrics({"step": 2, "val_accuracy": 50.0})
    rd.keep_metrics_upto(2)
    assert [json.loads(x)["step"] for x in rd.metrics.read_text().splitlines()] == [1, 2, 2]
    with pytest.raises(MdmfError, match="no best.pt"):
        rd.load_model()


def test_one_device_resolver_and_one_default_store_path():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device() == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(MdmfError, match="no CUDA device"):
            resolve_device("cuda")
    assert default_store_path("toy") == Path("cache/toy/tiny")
    assert default_store_path("hmdb51") == Path("cache/hmdb51/RN50")
    assert default_store_path("hmdb51", "ViT-B-16") == Path("cache/hmdb51/ViT-B-16")
    with pytest.raises(MdmfError, match="--dataset"):
        default_store_path(None)


def test_an_eval_request_writes_the_run_eval_file_and_the_cli_renders_it(run, tmp_path):
    rd, _ = run
    result, out, title = evaluate_request(EvalRequest(run=str(rd.path), episodes=30, device="cpu", progress=False))
    assert out == rd.eval_path("test", 5, 1, 0) and out.is_file() and out.with_suffix(".txt").is_file()
    assert json.loads(out.read_text()) == result.to_json()
    elsewhere = evaluate_request(EvalRequest(run=str(rd.path), episodes=30, device="cpu", progress=False,
                                             out=str(tmp_path / "elsewhere")))[1]
    again = json.loads(elsewhere.read_text())
    assert elsewhere == tmp_path / "elsewhere" / out.name and again["accuracy"] == result.accuracy  # same episodes
    assert title == f"{rd.name} (mdmf) on test"
    text = io.StringIO()
    print_eval_result(result, title, out, Console(file=text, width=200))
    assert f"5-way 1-shot: {result.accuracy:.2f}" in text.getvalue() and str(out) in text.getvalue()
    with pytest.raises(MdmfError, match="either --run"):
        evaluate_request(EvalRequest())
    with pytest.raises(MdmfError, match="--from-frames is for runs"):
        evaluate_request(EvalRequest(run=str(rd.path), from_frames=True, device="cpu"))


def test_a_hostile_pickle_in_a_run_folder_is_refused_and_runs_nothing(tmp_path):
    """Run folders are shared like checkpoints are: loading one must not execute code. A best.pt whose unpickling
    would create a marker file is refused with one line through the real CLI (exit 2), and the marker never appears."""
    import subprocess
    import sys

    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self):
            return (Path.touch, (marker,))

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": Hostile()}, run / "best.pt")  # as a shared checkpoint would be written
    (run / "config.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "mdmf", "eval", "--run", str(run), "--quiet"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refused" in lines[0] and "best.pt" in lines[0], proc.stderr
    assert not marker.exists()
    # the same file loaded without the guard would have run the code: the test can fail
    torch.load(run / "best.pt", weights_only=False)
    assert marker.exists()


def _cli(capsys, *args) -> tuple[int, str, str]:
    """The console script's `main` in this process: (exit code, stdout, stderr)."""
    return run_main(capsys, *args)


def _accuracy(capsys, cwd: Path, run: Path, monkeypatch, *more) -> float:
    monkeypatch.chdir(cwd)
    result = cwd / f"result-{len(list(cwd.glob('result-*')))}.json"
    code, _, err = _cli(capsys, "eval", "--run", run, "--episodes", "60", "--device", "cpu", "--quiet",
                        "--json", result, *more)
    assert code == 0, err
    return json.loads(result.read_text())["accuracy"]


def test_a_run_copied_with_its_store_evaluates_from_any_folder(tmp_path, monkeypatch, capsys):
    """Train with relative paths in one folder, copy run + store elsewhere (same relative layout), remove the
    original, evaluate from a third folder: the same accuracy; a different store at the recorded place is refused,
    --cache names a store that moved, and resume works from the new place."""
    import shutil

    first, second, elsewhere = tmp_path / "first", tmp_path / "second", tmp_path / "elsewhere"
    for folder in (first, elsewhere):
        folder.mkdir()
    make_store(first / "cache" / "st", noise=2.5)
    monkeypatch.chdir(first)
    code, _, err = _cli(capsys, "train", "--cache", "cache/st", "--name", "r", "--steps", "2", "--episodes-per-step",
                        "4", "--batch-episodes", "2", "--val-every", "2", "--val-episodes", "20", "--set", "heads=4",
                        "--set", "mlp_dim=64", "--device", "cpu", "--quiet")
    assert code == 0, err
    location = RunDir(first / "runs" / "r").read_config()["store_location"]
    assert location["given"] == "cache/st" and location["relative_to_run"] == "../../cache/st"
    original = _accuracy(capsys, first, Path("runs/r"), monkeypatch)

    shutil.copytree(first, second)
    shutil.rmtree(first)  # neither the absolute nor the cwd-relative path can find it now
    assert _accuracy(capsys, elsewhere, second / "runs" / "r", monkeypatch) == original
    # resume (a longer run) from another folder writes into the run as named now, on the store found by identity
    monkeypatch.chdir(elsewhere)
    code, _, err = _cli(capsys, "train", "--runs", second / "runs", "--name", "r", "--resume", "--steps", "4",
                        "--device", "cpu", "--quiet")
    assert code == 0, err
    assert RunDir(second / "runs" / "r").trained_steps() == 4 and not (elsewhere / "runs").exists()

    moved = tmp_path / "moved"
    shutil.move(second / "cache" / "st", moved)
    make_store(second / "cache" / "st", noise=2.5, seed=1)  # another store where the run's was: refused
    monkeypatch.chdir(elsewhere)
    code, _, err = _cli(capsys, "eval", "--run", second / "runs" / "r", "--episodes", "10", "--device", "cpu",
                        "--quiet")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "holds another store" in lines[0] and "--cache" in lines[0], err
    assert "looked at" in lines[0] and str(second / "cache" / "st") in lines[0]
    assert _accuracy(capsys, elsewhere, second / "runs" / "r", monkeypatch, "--cache", moved) > 0


def test_a_run_made_before_locations_were_recorded_still_finds_its_store(tmp_path, monkeypatch, run):
    """Old run folders hold only the path as given (relative to the folder they were trained in): it is tried from
    here, then from each folder above the run, checked by the recorded identity."""
    import shutil

    rd, store = run
    project = tmp_path / "project"
    shutil.copytree(store.path, project / "cache" / "st")
    shutil.copytree(rd.path, project / "runs" / "old")
    for name in ("best.pt", "last.pt"):
        state = torch.load(project / "runs" / "old" / name, weights_only=True)
        state.pop("store_location")
        state["train_config"]["store"] = "cache/st"  # as `mdmf train --cache cache/st` in `project` wrote it
        torch.save(state, project / "runs" / "old" / name)
    monkeypatch.chdir(tmp_path)
    old = RunDir(project / "runs" / "old")
    assert old.open_store().path == project / "cache" / "st"
    assert old.store_candidates()[0] == Path("cache/st")
