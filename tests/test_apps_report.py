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
from mdmf.pipeline.runs import RunDir
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
    assert [a["correct"] for a in summary["attention"]] == [True, False] and summary["attention_note"] is None
    assert summary["tsne"]["backend"] in ("opentsne", "sklearn", "exact")
    counts = np.array(summary["confusion"]["counts"])
    assert counts.shape == (6, 6) and counts.sum() == 120 * 5  # 5 queries per episode (one per class)
    # the confusion matrix replays the evaluator's episodes and PPS draws: same per-class accuracy to the digit
    assert summary["predictions"]["per_class"] == pytest.approx(ev["per_class"], abs=1e-9)
    assert summary["predictions"]["accuracy"] == pytest.approx(ev["accuracy"], abs=1e-9)


def test_a_current_eval_json_of_the_run_is_reused_and_a_stale_one_is_not(trained, tmp_path):
    store, run = trained
    model, _ = RunDir(run).load_model()
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
    model, _ = RunDir(run).load_model()
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


def _predictions(true, predicted):
    from mdmf.pipeline.evaluate.predictions import EpisodePredictions

    true, predicted = torch.tensor(true), torch.tensor(predicted)
    E, M = true.shape
    return EpisodePredictions(classes=torch.arange(M).repeat(E, 1), query=torch.arange(E * M).reshape(E, M),
                              true=true, predicted=predicted, prompt_class=torch.full((E, M), -1))


def test_pick_examples_alternates_correct_and_wrong_and_says_when_one_kind_is_missing():
    from mdmf.pipeline.apps.report_data import pick_examples

    # episode 0: both queries right; episode 1: query 0 wrong, query 1 right; episode 2: query 1 wrong
    preds = _predictions([[0, 1], [0, 1], [0, 1]], [[0, 1], [1, 1], [0, 0]])
    assert pick_examples(preds, 2) == ([(0, 0), (1, 0)], None)
    assert pick_examples(preds, 4) == ([(0, 0), (1, 0), (0, 1), (2, 1)], None)
    assert pick_examples(preds, 6) == ([(0, 0), (1, 0), (0, 1), (2, 1), (1, 1), (2, 0)], None)
    assert pick_examples(preds, 9)[0] == pick_examples(preds, 6)[0]  # no more queries than there are
    right = _predictions([[0, 1], [0, 1]], [[0, 1], [0, 1]])
    picks, note = pick_examples(right, 2)
    assert picks == [(0, 0), (0, 1)] and note == ("no query was classified wrongly in the 2 episodes: every example "
                                                  "shown is a correct one")
    picks, note = pick_examples(_predictions([[0, 1]], [[1, 0]]), 2)
    assert picks == [(0, 0), (0, 1)] and "no query was classified correctly in the 1 episodes" in note


def _title_boxes(fig):
    """(text, window extent) of every title of a drawn figure: figure/subfigure suptitles and labels, axes titles."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = []
    for f in [fig, *fig.subfigs]:
        texts += [t for t in (f._suptitle, f._supxlabel) if t is not None and t.get_text()]
        texts += [t for t in f.texts if t.get_text()]
    for ax in fig.get_axes():
        texts += [t for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
    texts = list({id(t): t for t in texts}.values())  # a suptitle is one of its figure's texts too
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts], fig.bbox, renderer


def _overlaps(boxes):
    return [(a[0][:30], b[0][:30]) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a[1].overlaps(b[1])]


def test_attention_titles_do_not_overlap_are_inside_and_keep_whole_names():
    from matplotlib.figure import Figure

    from mdmf.pipeline.apps.report_data import AttentionExample
    from mdmf.pipeline.apps.report_figures import attention_figure

    long = ["Pulling two ends of something so that it separates into two pieces",
            "Lifting a surface with something on it until it starts sliding down",
            "Pretending to put something underneath something", "Moving something and something so they collide"]
    maps = {"global": np.random.default_rng(0).random((9, 9)), "local": np.random.default_rng(1).random((9, 9))}
    examples = [AttentionExample(episode=0, query=3, video_id="v_123456", true_class=long[0], prompt_class=long[1],
                                 predicted_class=long[0], correct=True, maps=maps),
                AttentionExample(episode=4, query=1, video_id="v_654321", true_class=long[2], prompt_class=None,
                                 predicted_class=long[3], correct=False, maps=maps)]
    note = "no query was classified wrongly in the 2000 episodes: every example shown is a correct one"
    boxes, frame, renderer = _title_boxes(attention_figure(examples, 8, note=note))
    assert len(boxes) == 2 + 4 + 1  # two row titles, four axes titles, the note
    assert not _overlaps(boxes)
    for text, box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
    joined = " ".join(" ".join(t.split()) for t, _ in boxes)
    for name in long + ["v_123456", "v_654321", "correct", "wrong", note]:
        assert name in joined, name  # whole, not cut (wrapping only breaks between words)
    assert "…" not in joined
    # the titles keep clear of the maps and their tick labels too
    fig = attention_figure(examples, 8, note=note)
    boxes, _, renderer = _title_boxes(fig)
    for ax in fig.get_axes():
        tight = ax.get_tightbbox(renderer, bbox_extra_artists=[])
        for text, box in boxes:
            if text not in (ax.title.get_text(),) and box.overlaps(tight):
                raise AssertionError(f"{text[:40]!r} overlaps an axes")
    # the check itself finds overlapping titles
    control = Figure(figsize=(3, 2))
    control.subplots(1, 2)[0].set_title("a title long enough to run into the neighbour's " * 2)
    control.get_axes()[1].set_title("neighbour")
    control_boxes, control_frame, _ = _title_boxes(control)
    assert _overlaps(control_boxes) or any(b.x0 < control_frame.x0 or b.x1 > control_frame.x1 for _, b in control_boxes)


def _drawn_figures(monkeypatch, make):
    """The Figure objects the report's figure functions save while `make()` runs, by name of the file."""
    import mdmf.pipeline.apps.report_figures as rf

    kept, real = {}, rf._save

    def save(fig, path):
        kept[Path(path).stem] = fig
        return real(fig, path)

    monkeypatch.setattr(rf, "_save", save)
    make()
    return kept


def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def test_figures_fit_the_page_with_readable_text_and_legends_off_the_data(trained, tmp_path, monkeypatch):
    """Issue 22, point 7: each PNG is at most the page's width (report.html shows it unscaled), no visible text is
    below 7 pt (11.7 px at 120 dpi), the per-class and t-SNE legends overlap no axes that hold data, the confusion
    cells are blank exactly where no query fell, the attention maps' colours span each map's own range, and the
    OTAM floor is beside the head."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.image import imread
    from matplotlib.legend import Legend

    from mdmf.pipeline.apps.report_figures import MIN_TEXT_PT, PAGE_PX, cell_text

    store, run = trained
    out = tmp_path / "r"
    figures = _drawn_figures(monkeypatch, lambda: make_report(ReportConfig(run=str(run), out=str(out), **FAST)))
    assert set(figures) == {"curves", "per_class", "confusion", "tsne", "attention"}
    for name, fig in figures.items():
        width = imread(out / f"{name}.png").shape[1]
        assert width <= PAGE_PX, (name, width)
        small = [(t.get_text()[:20], t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < MIN_TEXT_PT]
        assert not small, (name, small)
    for name in ("per_class", "tsne"):
        fig = figures[name]
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        legends = [lg for lg in fig.findobj(Legend)]
        assert legends, name
        data_axes = [ax for ax in fig.get_axes() if ax.axison and (ax.collections or ax.patches)]
        for lg in legends:
            box = lg.get_window_extent(renderer)
            for ax in data_axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: the legend lies on the data"
    summary = json.loads((out / "report.json").read_text())
    counts = np.array(summary["confusion"]["counts"])
    shown = [t.get_text() for t in figures["confusion"].axes[0].texts]
    assert len(shown) == counts.size  # every cell written (the class count leaves room), row by row
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    assert shown == [cell_text(r, c) for r, c in zip(rates.ravel(), counts.ravel())]
    assert all((text == "") == (c == 0) for text, c in zip(shown, counts.ravel()))
    assert cell_text(0.001, 1) == "<.01" and cell_text(0.0, 0) == "" and cell_text(0.5, 3) == "0.50"
    for ax in figures["attention"].get_axes():
        for image in ax.get_images():
            values = image.get_array()
            assert image.get_clim() == pytest.approx((float(values.min()), float(values.max())))
    baseline = summary["baseline"]
    assert (baseline["way"], baseline["shot"], baseline["episodes"]) == (5, 1, 120)
    # the floor is the untrained OTAM evaluated on its own, same episodes
    from mdmf.config import ModelConfig
    from mdmf.registry import build_model

    otam = build_model(ModelConfig(name="otam", dim=store.meta.dim, frames=store.meta.frames))
    alone = evaluate_split(otam, store, "test", EvalConfig(way=5, shot=1, episodes=120, device="cpu", progress=False))
    assert baseline["accuracy"] == pytest.approx(alone.accuracy)
    assert f"{alone.accuracy:.2f} ±" in (out / "report.md").read_text()


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
                 if os.path.exists(p)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_report_html_in_a_headless_browser_shows_every_figure_unscaled(trained, tmp_path):
    """report.html rendered by a real browser at a laptop's 1280 px window: every figure loads and is shown at its
    own width (so the text sizes the figure test checks are the sizes on the page), numbers are in the page."""
    import re

    store, run = trained
    out = tmp_path / "r"
    make_report(ReportConfig(run=str(run), out=str(out), **FAST))
    probe = out / "probe.html"
    script = ("<script>window.addEventListener('load',()=>{for(const i of document.images){"
              "i.setAttribute('data-shown',i.complete&&i.naturalWidth>0?(i.clientWidth+'/'+i.naturalWidth):'broken')}"
              "document.body.setAttribute('data-done','1')});</script>")
    probe.write_text((out / "report.html").read_text().replace("</body>", script + "</body>"))
    profile = tmp_path / "profile"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1280,1000", "--virtual-time-budget=5000",
            "--allow-file-access-from-files", "--dump-dom", probe.as_uri()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-done="1"' in dom, dom[-2000:]
    shown = re.findall(r'data-shown="([^"]+)"', dom)
    assert len(shown) == 5 and "broken" not in shown, shown
    for pair in shown:
        client, natural = map(int, pair.split("/"))
        assert client >= natural - 1, f"a figure is scaled down on the page: {pair}"
    assert "Untrained OTAM" in dom and "± " in dom
