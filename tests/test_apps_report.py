"""`mdmf report` on a tiny trained run over a synthetic store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mdmf.pipeline.evaluate.predictions import predict_episodes
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split
from mdmf.pipeline.runs import load_run_model
from mdmf.pipeline.apps.report import ReportConfig, make_report
from mdmf.pipeline.apps.report_data import tsne_subset, video_embeddings
from mdmf.pipeline.runs import read_curves
from mdmf.pipeline.train.loop import TrainConfig, train as run_training
from synthetic import make_store

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
FAST = dict(episodes=120, tsne_iterations=120, tsne_per_class=8, attention_examples=2, device="cpu", progress=False)


def train(store, run, **model):
    run_training(TrainConfig(store=str(store.path), run_dir=str(run), model={"heads": 4, "mlp_dim": 64, **model},
                             steps=4, episodes_per_step=2, batch_episodes=2, val_every=2, val_episodes=40, lr=1e-3,
                             progress=False, device="cpu"))
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    store = make_store(base / "store", noise=2.5)
    return store, train(store, base / "run", name="mdmf")


def test_report_writes_every_figure_and_the_summary(trained, tmp_path):
    store, run = trained
    summary = make_report(ReportConfig(run=str(run), out=str(tmp_path / "r"), **FAST))
    out = tmp_path / "r"
    for name in ("curves", "per_class", "confusion", "tsne", "attention"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000, name
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for figure in ("curves.png", "confusion.png", "tsne.png", "attention.png"):
        assert figure in md and f'src="{figure}"' in page
    assert "± " in md and page.startswith("<!doctype html>") and "<table>" in page
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(summary))
    ev = summary["evaluation"]
    assert ev["episodes"] == 120 and ev["source"] == "computed for this report"
    assert (out / "eval_test_5w1s_seed0.json").is_file()
    assert summary["tsne"]["panels"] == ["raw CLIP", "global (fused)", "local (fused)"]
    assert len(summary["attention"]) == 2 and summary["steps_logged"] == 4 and len(summary["validations"]) == 2
    counts = np.array(summary["confusion"]["counts"])
    assert counts.shape == (6, 6) and counts.sum() == 120 * 5  # 5 queries per episode (one per class)
    # the confusion matrix replays the evaluator's episodes and PPS draws: same per-class accuracy to the digit
    assert summary["predictions"]["per_class"] == pytest.approx(ev["per_class"], abs=1e-9)
    assert summary["predictions"]["accuracy"] == pytest.approx(ev["accuracy"], abs=1e-9)


def test_a_current_eval_json_of_the_run_is_reused_and_a_stale_one_is_not(trained, tmp_path):
    store, run = trained
    model, _ = load_run_model(run)
    result = evaluate_split(model, store, "test", EvalConfig(episodes=150, progress=False)).to_json()
    path = run / "eval" / "test_5w1s_seed0.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({**result, "accuracy": 12.5}))
    try:
        summary = make_report(ReportConfig(run=str(run), out=str(tmp_path / "a"), **FAST))
        assert summary["evaluation"]["accuracy"] == 12.5 and summary["evaluation"]["source"] == str(path)
        assert summary["predictions"]["episodes"] == 120  # min(its 150, the report's 120)
        stale = (run / "best.pt").stat().st_mtime - 10
        os.utime(path, (stale, stale))
        summary = make_report(ReportConfig(run=str(run), out=str(tmp_path / "b"), **FAST))
        assert summary["evaluation"]["source"] == "computed for this report"
    finally:
        path.unlink()


def test_clip_fsar_report_has_no_attention_figure(trained, tmp_path):
    store, _ = trained
    run = train(store, tmp_path / "fsar", name="clip-fsar")
    summary = make_report(ReportConfig(run=str(run), **FAST))
    assert "attention" not in summary["figures"] and not (run / "report" / "attention.png").exists()
    assert summary["tsne"]["panels"] == ["raw CLIP", "fsar (fused)"] and (run / "report" / "report.html").is_file()


def test_report_data_helpers(trained):
    store, run = trained
    curves = read_curves(run / "metrics.jsonl")
    assert [r["step"] for r in curves.train] == [1, 2, 3, 4] and [r["step"] for r in curves.val] == [2, 4]
    labels = np.repeat(np.arange(12), 5)
    rows = tsne_subset(labels, max_classes=4, per_class=3)
    assert len(rows) == 12 and set(labels[rows]) == {0, 4, 7, 11} and np.all(np.diff(rows) > 0)
    model, _ = load_run_model(run)
    data = store.load("test")
    frames = torch.as_tensor(data.features[:, 0]).float()
    emb = video_embeddings(model, frames, torch.as_tensor(data.prompt_embeddings))
    assert {k: tuple(v.shape) for k, v in emb.items()} == {"raw CLIP": (48, 32), "global (fused)": (48, 32),
                                                           "local (fused)": (48, 32)}
    preds = predict_episodes(model, data.features, data.labels, data.prompt_embeddings, 5, 1, 1, 30)
    assert preds.true.shape == (30, 5) and bool((preds.prompt_class >= 0).all())
    assert all(int(p) in set(c.tolist()) for p, c in zip(preds.predicted[:, 0], preds.classes))
    # an evaluation that kept its predictions gives the same per-query predictions without evaluating again
    from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate
    from mdmf.pipeline.evaluate.predictions import predictions_of

    kept = evaluate(model, data.features, data.labels, data.prompt_embeddings, data.class_names,
                    EvalConfig(way=5, shot=1, episodes=30, progress=False, keep_predictions=True))
    again = predictions_of(kept, data.labels)
    for field in ("classes", "query", "true", "predicted", "prompt_class"):
        assert torch.equal(getattr(again, field), getattr(preds, field)), field
    assert again.accuracy() == pytest.approx(kept.accuracy)


def test_cli_report(trained, tmp_path):
    _, run = trained
    proc = subprocess.run([sys.executable, "-m", "mdmf", "report", "--run", str(run), "--out", str(tmp_path / "c"),
                           "--episodes", "60", "--tsne-iterations", "60", "--device", "cpu", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and (tmp_path / "c" / "report.html").stat().st_size > 500
    missing = subprocess.run([sys.executable, "-m", "mdmf", "report", "--run", str(tmp_path / "nope")],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "best.pt" in missing.stderr and "Traceback" not in missing.stderr
