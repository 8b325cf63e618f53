"""`mdmf compare`: methods on identical episodes, paired differences against a hand-written formula."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mdmf.pipeline.apps.compare import CompareConfig, accuracy_interval, paired_difference, run_compare
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec
from mdmf.pipeline.evaluate.episodic import EvalConfig
from mdmf.pipeline.train.loop import TrainConfig, train
from mdmf.registry import MODELS
from synthetic import make_store

REPO = Path(__file__).resolve().parents[1]
QUICK = EvalConfig(episodes=10, device="cpu", progress=False)


def test_paired_difference_is_the_mean_difference_with_its_interval_and_t_test():
    method = np.array([100.0, 80.0, 60.0, 100.0])
    baseline = np.array([80.0, 80.0, 40.0, 60.0])
    # d = 20, 0, 20, 40: mean 20, sd sqrt((0 + 400 + 0 + 400) / 3), t = 20 / (sd / 2) = sqrt(6)
    sd = math.sqrt(800 / 3)
    got = paired_difference(method, baseline)
    assert got["mean"] == pytest.approx(20.0)
    assert got["ci95"] == pytest.approx(1.96 * sd / 2)
    assert got["t"] == pytest.approx(math.sqrt(6))
    assert got["p_value"] == pytest.approx(0.014306, abs=2e-6)  # two-sided normal tail at t = 2.449490
    assert paired_difference(baseline, method)["mean"] == pytest.approx(-20.0)
    same = paired_difference(method, method)
    assert same == {"mean": 0.0, "ci95": 0.0, "p_value": 1.0, "t": 0.0}
    shifted = paired_difference(method + 20, method)  # every episode 20 points better: no spread, p 0
    assert shifted["mean"] == 20 and shifted["ci95"] == 0 and shifted["p_value"] == 0.0
    acc, ci = accuracy_interval(method)
    assert acc == 85.0 and ci == pytest.approx(1.96 * np.std(method, ddof=1) / 2)
    with pytest.raises(MdmfError, match="at least 2 episodes"):
        paired_difference(method[:1], baseline[:1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A store, one trained MDMF run (PPS sampled at eval: its predictions depend on the PPS draws) and a copy of
    it under another name."""
    root = tmp_path_factory.mktemp("compare")
    store = make_store(root / "store", dim=32)
    run = root / "runs" / "mdmf-a"
    train(TrainConfig(store=str(store.path), run_dir=str(run), model={"name": "mdmf", "pps_eval_mode": "sample"},
                      shot=1, steps=2, episodes_per_step=2, batch_episodes=2, val_every=1, val_episodes=10,
                      device="cpu", progress=False))
    copy = root / "runs" / "mdmf-b"
    shutil.copytree(run, copy)
    return store, run, copy, root


def by_hand(model, store, episodes, seed=0):
    """Per-episode accuracy (%) of a method without PPS, one episode at a time through `forward`."""
    data = store.load("test")
    frames = torch.as_tensor(np.asarray(data.features[:, 0]), dtype=torch.float32)
    prompts = torch.as_tensor(data.prompt_embeddings, dtype=torch.float32)
    sampler = EpisodeSampler(data.labels, EpisodeSpec(5, 1, 1), seed=seed)
    out = []
    with torch.no_grad():
        for i in range(episodes):
            classes, support, query, _, _ = sampler.episode(i)
            scores = model.eval()(frames[support][None], prompts[classes][None], frames[query][None])
            out.append(100.0 * float((scores.logits[0].argmax(-1) == torch.arange(5)).double().mean()))
    return np.array(out)


def test_methods_see_identical_episodes_and_prompt_draws(setup, tmp_path):
    store, run, copy, _ = setup
    cfg = CompareConfig(runs=(str(run), str(copy)), models=("otam",), out=str(tmp_path / "cmp"),
                        episodes=EvalConfig(episodes=40, batch_episodes=16, device="cpu", progress=False))
    summary, out = run_compare(cfg)
    rows = {r["name"]: r for r in summary["methods"]}
    assert summary["baseline"] == "otam" and rows["otam"]["difference"] is None
    # the same weights under two names: the same episodes and the same PPS draws give the same accuracy on each
    assert summary["per_episode"]["mdmf-a"] == summary["per_episode"]["mdmf-b"]
    assert rows["mdmf-a"]["difference"] == rows["mdmf-b"]["difference"]
    # otam's per-episode accuracies are those of the same episodes drawn and scored one by one
    otam = MODELS["otam"](store_config(store))
    assert np.allclose(summary["per_episode"]["otam"], by_hand(otam, store, 40))
    d = np.array(summary["per_episode"]["mdmf-a"]) - np.array(summary["per_episode"]["otam"])
    assert rows["mdmf-a"]["difference"]["mean"] == pytest.approx(d.mean())
    assert rows["mdmf-a"]["difference"]["ci95"] == pytest.approx(1.96 * d.std(ddof=1) / math.sqrt(40))
    assert rows["otam"]["accuracy"] == pytest.approx(np.mean(summary["per_episode"]["otam"]))
    assert json.loads(out.with_suffix(".json").read_text())["methods"] == summary["methods"]
    assert "| mdmf-a | mdmf |" in out.with_suffix(".md").read_text()
    # with the copy as the baseline the original is 0 ± 0 from it
    again, _ = run_compare(CompareConfig(**{**cfg.__dict__, "baseline": "mdmf-b", "out": str(tmp_path / "c2")}))
    assert next(r for r in again["methods"] if r["name"] == "mdmf-a")["difference"]["ci95"] == 0.0
    assert again["episodes_sha256"] == summary["episodes_sha256"]


def store_config(store):
    from mdmf.config import ModelConfig

    return ModelConfig(name="otam", dim=store.meta.dim, frames=store.meta.frames)


def test_user_errors_are_one_line(setup, tmp_path):
    store, run, _, _ = setup
    with pytest.raises(MdmfError, match="nothing to train"):
        run_compare(CompareConfig(models=("mdmf",), cache=str(store.path), episodes=QUICK))
    with pytest.raises(MdmfError, match="not one of the methods"):
        run_compare(CompareConfig(runs=(str(run),), models=("otam",), baseline="trx", episodes=QUICK,
                                  out=str(tmp_path / "x")))
    with pytest.raises(MdmfError, match="nothing to compare"):
        run_compare(CompareConfig())


def test_cli_prints_the_table_and_writes_json(setup, tmp_path):
    store, run, _, _ = setup
    args = [sys.executable, "-m", "mdmf", "compare", "--run", str(run), "--model", "otam", "--episodes", "30",
            "--device", "cpu", "--quiet", "--out", str(tmp_path / "cmp"), "--json", "-"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [r["name"] for r in data["methods"]] == ["mdmf-a", "otam"] and data["episodes"] == 30
    shown = " ".join(proc.stderr.split())  # the footer is folded at the console's width
    assert "Δ to otam" in shown and "paired t-test" in shown
    bad = subprocess.run(args[:4] + ["--model", "mdmf", "--cache", str(store.path)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "nothing to train" in bad.stderr and "Traceback" not in bad.stderr
