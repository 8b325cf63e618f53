import json
import os
from pathlib import Path

import pytest
import torch

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split
from mdmf.pipeline.runs import RunDir
from mdmf.pipeline.train.loop import TrainConfig, build_head, train
from synthetic import SMALL_HEADS, make_store, small_train_config

REPO = Path(__file__).resolve().parents[1]
THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

SMALL = SMALL_HEADS


@pytest.fixture(scope="module")
def store(train_store):
    return train_store


def cfg(store, run_dir, **kw):
    return small_train_config(store, run_dir, **kw)


def test_run_folder_and_checkpoints(store, tmp_path):
    best = train(cfg(store, tmp_path / "run"))
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "last.pt", "best.pt"}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4, 5, 6]
    assert [x["step"] for x in lines if "val_accuracy" in x] == [3, 6]
    assert best["step"] in (3, 6) and best["val_accuracy"] == max(x["val_accuracy"] for x in lines if "val_accuracy" in x)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["heads"] == 4 and config["model"]["dim"] == 32 and config["train"]["steps"] == 6
    model, state = RunDir(run).load_model()
    assert state["step"] == best["step"] and model.config.heads == 4
    assert not list(run.glob(".*tmp*")), "no temporary checkpoint files left behind"


def test_resume_continues_the_same_run(store, tmp_path):
    train(cfg(store, tmp_path / "straight", steps=6))
    train(cfg(store, tmp_path / "split", steps=3))
    train(cfg(store, tmp_path / "split", lr=5.0), resume=True, steps=6)  # saved config used; steps extended
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    assert b["step"] == 6
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0, msg=key)
    la = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]  # noqa: E731
    assert strip(la) == strip(lb)


def test_clip_fsar_trains_with_its_video_text_loss(store, tmp_path):
    train(cfg(store, tmp_path / "fsar", model={"name": "clip-fsar", "heads": 4, "mlp_dim": 64}, steps=2,
                   val_every=2))
    line = json.loads((tmp_path / "fsar" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["video_text"] > 0 and line["loss"] > line["ce"]


def test_existing_run_needs_resume_and_resume_needs_a_run(store, tmp_path):
    train(cfg(store, tmp_path / "run", steps=3))
    with pytest.raises(MdmfError, match="--resume"):
        train(cfg(store, tmp_path / "run", steps=3))
    with pytest.raises(MdmfError, match="nothing to resume"):
        train(cfg(store, tmp_path / "fresh"), resume=True)
    # stopped (SIGTERM while loading) or killed before its first checkpoint: nothing to keep, so it starts over

    RunDir(tmp_path / "early").start({"train": {}})
    with pytest.raises(MdmfError, match="nothing to resume .*without --resume"):
        train(cfg(store, tmp_path / "early", steps=3), resume=True)
    assert train(cfg(store, tmp_path / "early", steps=3))["step"] == 3


def test_bad_model_settings_are_user_errors(store, tmp_path):
    with pytest.raises(MdmfError, match="views"):
        train(cfg(store, tmp_path / "r", model={**SMALL, "views": "sideways"}))
    with pytest.raises(MdmfError, match="no trainable parameters"):
        train(cfg(store, tmp_path / "o", model={"name": "otam"}))


def test_training_beats_the_untrained_model(tmp_path):
    """A real learning test: validation accuracy of the head after training clearly above before.

    The class signal sits in 8 of 32 dimensions under large per-frame nuisance in the rest (see synthetic.py)."""
    store = make_store(tmp_path / "nuisance", noise=0.5, nuisance=3.0)
    torch.manual_seed(0)
    untrained = build_head(store, SMALL)
    ev = EvalConfig(episodes=400, seed=1, progress=False)
    before = evaluate_split(untrained, store, "val", ev).accuracy
    train(cfg(store, tmp_path / "learn", steps=60, val_every=20, episodes_per_step=8, batch_episodes=8, lr=1e-2))
    model, _ = RunDir(tmp_path / "learn").load_model()
    after = evaluate_split(model, store, "val", ev).accuracy
    assert after > before + 15, (before, after)  # measured: 22.5 -> 48.6


STOPS = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR1": 138}  # Ctrl-C; Slurm / Kubernetes stopping a job; Slurm's warning
FINAL_STEP = 40  # the interrupted runs are resumed up to here (they stop near step 5)


@pytest.fixture(scope="module")
def straight_run(store, tmp_path_factory):
    """The uninterrupted run the interrupted-and-resumed ones must equal (once for all the signals)."""
    import subprocess

    runs = tmp_path_factory.mktemp("straight")
    done = subprocess.run(_train_args(store, runs, "straight", "--steps", str(FINAL_STEP)), cwd=REPO,
                          env=THREAD_ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return runs / "straight"


def _train_args(store, runs, name, *extra):
    import sys

    return [sys.executable, "-m", "mdmf", "train", "--stage", "head", "--cache", str(store.path), "--runs", str(runs),
            "--name", name, "--set", "heads=4", "--set", "mlp_dim=64", "--steps", "400", "--episodes-per-step", "4",
            "--batch-episodes", "2", "--val-every", "1000", "--val-episodes", "20", "--device", "cpu", "--threads",
            "1", "--quiet", *extra]


@pytest.mark.parametrize("name", list(STOPS))
def test_a_stop_signal_keeps_every_finished_step_and_resume_is_exact(store, tmp_path, straight_run, name):
    """The real CLI: SIGINT (Ctrl-C), SIGTERM or SIGUSR1 mid-run (between validations) -> exit 128 + the signal,
    last.pt at the last finished step, one line saying how to continue; --resume then ends with the uninterrupted
    run's weights and metrics."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(_train_args(store, tmp_path, "cut"), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=THREAD_ENV)
    metrics, deadline = tmp_path / "cut" / "metrics.jsonl", time.time() + 120
    while (not metrics.is_file() or len(metrics.read_text().splitlines()) < 5) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(getattr(signal, name))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == STOPS[name], err
    told = [line for line in err.splitlines() if "run the same command again with --resume" in line]
    assert len(told) == 1 and "interrupted" in told[0] and "finished work is kept" in told[0], err
    assert (name != "SIGINT") == (f"by {name}" in told[0]) and "Traceback" not in err
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    steps_logged = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if "loss" in x]
    assert 5 <= state["step"] < FINAL_STEP and steps_logged == list(range(1, state["step"] + 1))

    resumed = subprocess.run(_train_args(store, tmp_path, "cut", "--resume", "--steps", str(FINAL_STEP)), cwd=REPO,
                             env=THREAD_ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(straight_run / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == FINAL_STEP
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0, msg=key)
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "seconds"}  # noqa: E731
                       for x in p.read_text().splitlines()]
    assert strip(straight_run / "metrics.jsonl") == strip(metrics)


def test_a_run_saved_before_the_reference_defaults_loads_as_the_model_it_was(store, tmp_path):
    """A best.pt written before config_version 2 has no fields for the reference-code choices: it must load with
    the pre-LN block and the other old choices its weights belong to, and score exactly as that model does."""
    from mdmf.config import LEGACY_VALUES, ModelConfig
    from mdmf.registry import build_model
    from mdmf.pipeline.core.checkpoint import save_atomic

    train(cfg(store, tmp_path / "run", model={**SMALL, **LEGACY_VALUES}))
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    state["model_config"] = {k: v for k, v in state["model_config"].items()
                             if k not in {*LEGACY_VALUES, "config_version"}}  # as the old code wrote it
    save_atomic(state, tmp_path / "run" / "best.pt")
    model, _ = RunDir(tmp_path / "run").load_model()
    assert model.config.block == "pre-ln" and model.config.ce_reduction == "mean"
    same = build_model(ModelConfig.from_dict({**state["model_config"], **LEGACY_VALUES}))
    same.load_state_dict(state["model"])
    ev = EvalConfig(episodes=50, progress=False)
    assert evaluate_split(model, store, "test", ev).accuracy == evaluate_split(same, store, "test", ev).accuracy
    # and resuming / --init from such a run keeps the architecture too (its weights load into it)
    train(cfg(store, tmp_path / "init", init=str(tmp_path / "run")))
    assert json.loads((tmp_path / "init" / "config.json").read_text())["model"]["block"] == "pre-ln"


@pytest.mark.parametrize("world,head,e2e", [(1, (16, 16), (16, 1)), (2, (16, 8), (16, 1)), (3, (18, 6), (18, 1)),
                                             (4, (16, 4), (16, 1))])
def test_the_default_step_fits_any_number_of_processes(world, head, e2e, monkeypatch):
    """Defaults: 16 episodes per step (the next multiple of the processes when 16 is not one), and the largest pass
    that divides each process's share; one process keeps 16 and 16 (head) / 1 (e2e), as before."""
    from mdmf.pipeline.train.loop import build_train_config, fit_to_world

    assert fit_to_world("head", None, None, world) == head and fit_to_world("e2e", None, None, world) == e2e
    monkeypatch.setenv("WORLD_SIZE", str(world))  # what torchrun sets; TrainConfig fits its defaults to it
    t = TrainConfig(store="s", run_dir="r")
    assert (t.episodes_per_step, t.batch_episodes) == head
    # a preset's pass size is at most (clip-fsar: 4 episodes per step, 4 per pass); its episodes per step and the
    # user's explicit values are kept as given
    given = {"stage": "head", "store": "s", "run_dir": "r"}
    if world == 3:
        with pytest.raises(MdmfError, match="--episodes-per-step 4 does not split over 3 processes"):
            build_train_config("clip-fsar-hmdb51", given, {})
    else:
        fsar = build_train_config("clip-fsar-hmdb51", given, {})
        assert (fsar.episodes_per_step, fsar.batch_episodes) == (4, 4 // world)
    assert (TrainConfig(store="s", run_dir="r", episodes_per_step=24 * world, batch_episodes=3).batch_episodes) == 3


def test_any_world_size_gets_a_valid_split_and_explicit_misfits_are_user_errors():
    from mdmf.pipeline.train.loop import fit_to_world

    for world in range(1, 65):
        for stage in ("head", "e2e"):
            eps, batch = fit_to_world(stage, None, None, world)
            assert eps % (batch * world) == 0 and 16 <= eps < 16 + world and 1 <= batch <= (16 if stage == "head" else 1)
    assert fit_to_world("head", 8, None, 1) == (8, 8)  # was an error before: 8 % 16
    with pytest.raises(MdmfError, match=r"--batch-episodes 16 does not divide the 8 episodes .*e\.g\. 8"):
        fit_to_world("head", 16, 16, 2)  # explicit values are never changed
    with pytest.raises(MdmfError, match=r"--episodes-per-step 16 does not split over 3 processes.*e\.g\. 18"):
        fit_to_world("head", 16, None, 3)


def test_torchrun_with_the_defaults_computes_the_single_process_update(store, tmp_path):
    """`torchrun --nproc_per_node 2 … mdmf train` with no step settings (gloo on CPU): 16 episodes per step, 8 per
    process in one pass; the same update and metrics as one process with --batch-episodes 8 (the same passes)."""
    import subprocess
    import sys

    common = ["train", "--stage", "head", "--cache", str(store.path), "--runs", str(tmp_path), "--set", "heads=4",
              "--set", "mlp_dim=64", "--set", "ce_reduction=mean", "--steps", "2", "--lr", "1e-3", "--val-every", "2",
              "--val-episodes", "20", "--device", "cpu", "--threads", "1", "--quiet"]
    env = {k: v for k, v in THREAD_ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                          "mdmf", *common, "--name", "two"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "mdmf", *common, "--name", "one", "--batch-episodes", "8"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    assert (b["train_config"]["episodes_per_step"], b["train_config"]["batch_episodes"]) == (16, 8)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-4, atol=1e-6)
    # the training rows (validation after the update may flip a near-tie: Adam moves a parameter whose gradient is
    # rounding noise by ±lr either way, see test_train_e2e's two-process test)
    rows = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines() if "loss" in x]  # noqa: E731
    for x, y in zip(rows(tmp_path / "one"), rows(tmp_path / "two"), strict=True):
        assert list(x) == list(y) and x.get("train_accuracy") == y.get("train_accuracy")
        assert all(abs(x[k] - y[k]) < 1e-4 for k in x if k != "seconds")


def test_sigterm_to_torchrun_stops_every_process_at_one_saved_step(store, tmp_path):
    """SIGTERM to `torchrun` (2 gloo processes), which passes it to its workers: both stop after the same optimizer
    step, rank 0 saves last.pt there (every logged step, none after), one line says how to continue."""
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in THREAD_ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mdmf",
            *_train_args(store, tmp_path, "cut")[3:]]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    metrics, deadline = tmp_path / "cut" / "metrics.jsonl", time.time() + 120
    while (not metrics.is_file() or len(metrics.read_text().splitlines()) < 5) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    told = [line for line in err.splitlines() if "run the same command again with --resume" in line]
    assert len(told) == 1 and "interrupted by SIGTERM" in told[0], err[-3000:]
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    steps_logged = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if "loss" in x]
    assert 5 <= state["step"] < 400 and steps_logged == list(range(1, state["step"] + 1))
