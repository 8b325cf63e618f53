import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mdmf.config import ModelConfig
from mdmf.registry import build_model
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split
from synthetic import make_store

SMALL = dict(dim=32, heads=4, mlp_dim=64)
# The heads of docs/HEADS.md: their episode-independent work reused as the others'.
HEADS = [("protonet", {}), ("protonet", {"protonet_metric": "squared-euclidean"}), ("clip-zeroshot", {}),
         ("trx", {"trx_dim": 24}), ("strm", {"trx_dim": 24, "trx_cardinalities": (2,)})]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("eval") / "store")


@pytest.mark.parametrize("name,options", [("otam", {}), ("mdmf", SMALL), ("mdmf", {**SMALL, "pps": False}),
                                          ("mdmf", {**SMALL, "views": "local", "pps_eval_mode": "argmax"}),
                                          ("clip-fsar", SMALL), *HEADS])
@pytest.mark.parametrize("shot", [1, 5])
def test_reuse_gives_the_naive_result_to_the_last_digit(store, name, options, shot):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, **{"dim": 32, **options}))
    cfg = dict(shot=shot, episodes=300, batch_episodes=100, progress=False)
    fast = evaluate_split(model, store, "test", EvalConfig(**cfg, reuse=True))
    slow = evaluate_split(model, store, "test", EvalConfig(**cfg, reuse=False))
    assert fast.accuracy == slow.accuracy and fast.per_class == slow.per_class
    assert 20 < fast.accuracy <= 100


@pytest.mark.parametrize("threads", [1, 2])
def test_both_scoring_paths_give_the_naive_predictions(store, threads):
    """1 thread: chunks in order on one stream (the GPU's path); 2: chunks spread over worker threads (CPU)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="mdmf", **SMALL))
    cfg = dict(shot=5, episodes=250, batch_episodes=100, score_episodes=30, progress=False, keep_predictions=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fast = evaluate_split(model, store, "test", EvalConfig(**cfg, reuse=True))
    finally:
        torch.set_num_threads(before)
    slow = evaluate_split(model, store, "test", EvalConfig(**cfg, reuse=False))
    assert torch.equal(fast.predictions, slow.predictions) and fast.accuracy == slow.accuracy


def test_same_seed_same_number_other_seed_other_episodes(store):
    model = build_model(ModelConfig(name="mdmf", **SMALL))
    a = evaluate_split(model, store, "test", EvalConfig(episodes=400, seed=3, progress=False))
    b = evaluate_split(model, store, "test", EvalConfig(episodes=400, seed=3, batch_episodes=37, progress=False))
    c = evaluate_split(model, store, "test", EvalConfig(episodes=400, seed=4, progress=False))
    assert a.accuracy != c.accuracy
    # batch size changes how PPS draws are grouped, not the episodes: OTAM (no PPS) must agree exactly
    otam = build_model(ModelConfig(name="otam", dim=32))
    x = evaluate_split(otam, store, "test", EvalConfig(episodes=400, seed=3, progress=False))
    y = evaluate_split(otam, store, "test", EvalConfig(episodes=400, seed=3, batch_episodes=37, progress=False))
    assert x.accuracy == y.accuracy and a.accuracy == evaluate_split(
        model, store, "test", EvalConfig(episodes=400, seed=3, progress=False)).accuracy
    assert b.episodes == 400


def test_interval_and_per_class(store):
    otam = build_model(ModelConfig(name="otam", dim=32))
    r = evaluate_split(otam, store, "test", EvalConfig(episodes=500, progress=False))
    assert set(r.per_class) == {f"test class {c}" for c in range(6)}
    assert 0 < r.ci95 < 5
    # the interval is 1.96 sigma / sqrt(n) of per-episode accuracy: quadrupling n halves it (roughly)
    r4 = evaluate_split(otam, store, "test", EvalConfig(episodes=2000, progress=False))
    assert 0.35 < r4.ci95 / r.ci95 < 0.65


def test_eval_cli_otam_baseline_writes_json(store, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "mdmf", "eval", "--model", "otam", "--cache", str(store.path),
                           "--episodes", "200", "--shot", "5", "--json", str(out), "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data) >= {"accuracy", "ci95", "episodes", "way", "shot", "per_class"}
    assert data["episodes"] == 200 and data["shot"] == 5 and data["way"] == 5
    assert "accuracy" in proc.stdout or "%" in proc.stdout
