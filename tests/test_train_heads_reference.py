"""The heads of the CLIP-FSAR codebase (crosstransformer, hyrsm, hyrsm++): each trains with
`mdmf train --stage head` under its reference preset and evaluates with `mdmf eval --run`, as a user types them;
evaluation's reused path and one-episode scoring (`predict`) agree with the model's `forward`."""

import json

import pytest
import torch

from clirun import run_main
from mdmf import ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split
from synthetic import make_store

# (preset, overrides that keep the test small: the authors' widths are for D = 2048)
HEADS = [("reference-crosstransformer", {"crosstransformer_hidden": 16}), ("reference-hyrsm", {"hyrsm_heads": 4}),
         ("reference-hyrsm", {"hyrsm_heads": 4, "hyrsm_shots": "videos"}), ("reference-hyrsm++", {"hyrsm_heads": 4})]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("heads") / "cache" / "st", noise=2.5)


def model_of(preset, small, **more):
    torch.manual_seed(0)
    return build_model(ModelConfig.from_dict({**load_preset(preset).model, "dim": 32, **small, **more}))


@pytest.mark.parametrize("preset,small", HEADS)
def test_trains_on_the_cache_and_evaluates_from_its_run(store, preset, small, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sets = [arg for key, value in small.items() for arg in ("--set", f"{key}={value}")]
    code, _, err = run_main(capsys, "train", "--stage", "head", "--cache", store.path, "--preset", preset, *sets,
                            "--name", "r", "--steps", "3", "--episodes-per-step", "4", "--batch-episodes", "2",
                            "--queries", "2", "--val-every", "3", "--val-episodes", "20", "--device", "cpu", "--quiet")
    assert code == 0, err
    config = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    metrics = [json.loads(line) for line in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
    assert config["model"]["name"] in preset and [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert config["model"]["train_classes"] == len(store.strings("train", "class_names"))
    if config["model"]["name"] == "hyrsm":  # the authors' extra training terms are in the loss
        assert all(m["frame_class"] > 0 and m["loss"] > m["ce"] for m in metrics if "loss" in m)
        assert all(("temporal" in m) == preset.endswith("++") for m in metrics if "loss" in m)
    for shot in (1, 5):
        code, _, err = run_main(capsys, "eval", "--run", "runs/r", "--shot", shot, "--episodes", "40", "--device",
                                "cpu", "--quiet", "--json", tmp_path / f"eval{shot}.json")
        assert code == 0, err
        result = json.loads((tmp_path / f"eval{shot}.json").read_text())
        assert result["shot"] == shot and result["episodes"] == 40 and 0 <= result["accuracy"] <= 100


@pytest.mark.parametrize("preset,small", HEADS)
@pytest.mark.parametrize("shot", [1, 5])
def test_reused_evaluation_gives_the_naive_predictions(store, preset, small, shot):
    model = model_of(preset, small)
    cfg = dict(shot=shot, episodes=120, batch_episodes=40, progress=False, keep_predictions=True)
    fast = evaluate_split(model, store, "test", EvalConfig(**cfg, reuse=True))
    slow = evaluate_split(model, store, "test", EvalConfig(**cfg, reuse=False))
    assert torch.equal(fast.predictions, slow.predictions) and 20 < fast.accuracy <= 100


@pytest.mark.parametrize("preset,small", HEADS)
def test_even_shots_given_per_class_are_the_episode(preset, small):
    """`predict`'s form, one `(K, T, D)` tensor per class, is the `(1, N, K, T, D)` episode when the K are equal (the
    uneven case is tested against the authors' computation in each head's test file)."""
    N, K, M, T, D = 3, 2, 5, 8, 32
    model = model_of(preset, small).double().eval()
    g = torch.Generator().manual_seed(3)
    support = torch.randn(1, N, K, T, D, generator=g, dtype=torch.float64)
    query = torch.randn(1, M, T, D, generator=g, dtype=torch.float64)
    prompts = torch.randn(1, N, D, generator=g, dtype=torch.float64)
    torch.testing.assert_close(model(list(support[0]), prompts, query).logits, model(support, prompts, query).logits,
                               rtol=0, atol=0)
