"""The heads of docs/HEADS.md through the real CLI on a real store: `mdmf train --stage head` then `mdmf eval --run`
for the trainable ones (their validation accuracy rises above the untrained model's), `mdmf eval --model` for the
parameter-free ones, and the e2e stage through each kind (tests/test_train_e2e.py's micro backbone and videos)."""

import json

import pytest
import torch

from clirun import run_main
from conftest import MICRO_CONFIG
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split
from mdmf.pipeline.runs import RunDir
from mdmf.pipeline.train.loop import build_head, train
from synthetic import make_store
from test_train_e2e import config as e2e_config, dataset, extract  # noqa: F401  (dataset: the e2e videos fixture)

# Small widths: the test is about the pipeline, the computation is checked in tests/test_model_<head>.py.
TRAINABLE = {"trx": ["trx_dim=32"], "strm": ["trx_dim=32", "strm_learn_distance=true"],
             "crosstransformer": ["crosstransformer_hidden=32"], "hyrsm": ["hyrsm_heads=4"]}
UNTRAINED = ["protonet", "clip-zeroshot"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Class signal in 8 of 32 dimensions under per-frame nuisance: a head that learns to ignore it gains."""
    return make_store(tmp_path_factory.mktemp("heads") / "store", noise=0.5, nuisance=3.0)


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_head_stage_trains_and_evaluates(store, tmp_path, capsys, name):
    sets = [a for s in TRAINABLE[name] for a in ("--set", s)]
    code, out, err = run_main(capsys, "train", "--stage", "head", "--cache", store.path, "--model", name, *sets,
                              "--runs", tmp_path, "--name", name, "--steps", 60, "--lr", 1e-2, "--val-every", 60,
                              "--val-episodes", 300, "--episodes-per-step", 8, "--batch-episodes", 8, "--device", "cpu",
                              "--quiet")
    assert code == 0, err
    run = RunDir(tmp_path / name)
    model, _ = run.load_model()
    assert model.config.name == name
    val = [json.loads(x)["val_accuracy"] for x in (run.path / "metrics.jsonl").read_text().splitlines()
           if "val_accuracy" in x]
    torch.manual_seed(0)
    settings = dict(s.split("=") for s in TRAINABLE[name])
    untrained = build_head(store, {"name": name, **{k: json.loads(v) for k, v in settings.items()}})
    before = evaluate_split(untrained, store, "val", EvalConfig(episodes=300, progress=False, queries=1))
    assert val[-1] > before.accuracy + 15, (before.accuracy, val)  # measured (trx): 20.4 -> 52.7
    code, out, err = run_main(capsys, "eval", "--run", run.path, "--episodes", 200, "--device", "cpu")
    assert code == 0, err
    result = json.loads((run.path / "eval" / "test_5w1s_seed0.json").read_text())
    assert result["episodes"] == 200 and 20 < result["accuracy"] <= 100


@pytest.mark.parametrize("name", UNTRAINED)
def test_parameter_free_heads_are_evaluated_directly_and_refuse_the_head_stage(store, tmp_path, capsys, name):
    code, out, err = run_main(capsys, "eval", "--model", name, "--cache", store.path, "--episodes", 200,
                              "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    assert 20 < json.loads((tmp_path / "test_5w1s_seed0.json").read_text())["accuracy"] <= 100
    code, out, err = run_main(capsys, "train", "--stage", "head", "--cache", store.path, "--model", name,
                              "--runs", tmp_path, "--steps", 2, "--device", "cpu")
    assert code == 2 and "no trainable parameters on cached features" in err and "--stage e2e" in err


@pytest.fixture(scope="module")
def e2e_store(dataset, tmp_path_factory):
    return extract(dataset, tmp_path_factory.mktemp("heads_e2e") / "store")


@pytest.mark.parametrize("model", [{"name": "trx", "trx_dim": 16}, {"name": "strm", "trx_dim": 16},
                                   {"name": "protonet"}, {"name": "clip-zeroshot"},
                                   {"name": "crosstransformer", "crosstransformer_hidden": 16},
                                   {"name": "hyrsm", "hyrsm_heads": 4, "hyrsm_temporal_weight": 0.2}])
def test_e2e_stage_trains_the_backbone_through_the_head(e2e_store, tmp_path, capsys, model):
    """The same model under --stage e2e: a head with parameters (trx) and one without (protonet: only the backbone
    learns, as the codebase trains CNN_TSN). Then `mdmf eval --run` evaluates it on features of the tuned encoder."""
    run = tmp_path / model["name"]
    train(e2e_config(e2e_store, run, model=model, steps=3, val_every=3))
    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone

    tuned = torch.load(run / "visual.pt", weights_only=False)["visual"]
    start = load_backbone(resolve_backbone(str(MICRO_CONFIG), "random")).model.visual.state_dict()
    assert sum(not torch.equal(start[k], tuned[k]) for k in start) > len(start) // 2  # the backbone moved
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 3
    code, out, err = run_main(capsys, "eval", "--run", run, "--episodes", 30, "--way", 3, "--device", "cpu",
                              "--workers", 0)
    assert code == 0, err
    assert json.loads((run / "eval" / "test_3w1s_seed0.json").read_text())["episodes"] == 30
