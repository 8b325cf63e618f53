"""`mdmf report`: figures and a short summary of a trained run, written to `<run>/report/`.

* `curves.png`: training loss (and its parts) and train / validation accuracy per step, from `metrics.jsonl`;
* `per_class.png`, `confusion.png`: per-class accuracy and the confusion matrix on the test split. The accuracies
  come from `mdmf.pipeline.evaluate.episodic` (an existing `<run>/eval/<split>_<way>w<shot>s_seed<seed>.json` newer than `best.pt`
  is reused; otherwise `episodes` episodes are evaluated and written to `report/eval_…json`); the confusion matrix
  from `mdmf.pipeline.evaluate.predictions` on the first `episodes` of the same seeded episodes;
* `tsne.png`: t-SNE of test videos, raw CLIP features (mean over frames) beside each view's fused features;
* `attention.png`: MMFE attention (MDMF only) for a correctly and a wrongly classified query (`pick_examples`);
* `report.json` (all numbers), `report.md` and `report.html` (the same summary, figures linked).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from mdmf.config import ModelConfig
from mdmf.pipeline.apps.report_data import attention_examples, tsne_subset, video_embeddings
from mdmf.pipeline.apps.report_summary import write_summary
from mdmf.pipeline.apps.tsne import choose_backend, embed
from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.limits import COUNT, NONNEGATIVE, WAY, check_ranges
from mdmf.pipeline.core.paths import check_writable, file_system_errors
from mdmf.pipeline.core.progress import progress_bar
from mdmf.pipeline.evaluate.episodic import EvalConfig, EvalResult, evaluate, write_result
from mdmf.pipeline.evaluate.predictions import predict_episodes, predictions_of
from mdmf.pipeline.runs import RunDir
from mdmf.registry import build_model


# The allowed values of ReportConfig's numeric settings (`mdmf.pipeline.core.limits`); None: not given.
REPORT_RANGES = {"way": WAY, "shot": COUNT, "episodes": COUNT, "seed": NONNEGATIVE, "tsne_classes": COUNT,
                 "tsne_per_class": COUNT, "tsne_iterations": COUNT, "attention_examples": NONNEGATIVE}


@dataclass
class ReportConfig:
    run: str
    out: str | None = None  # None: <run>/report
    cache: str | None = None  # None: the store recorded in the run
    cross_dataset: bool = False  # --cache of another dataset (same encoder) is meant
    split: str = "test"
    way: int | None = None  # None: the run's training way
    shot: int | None = None  # None: the run's training shot
    episodes: int = 10_000  # as `mdmf eval` (EvalRequest): without an eval JSON the report evaluates the same
    seed: int = 0
    reuse_eval: bool = True
    tsne_classes: int = 10
    tsne_per_class: int = 60
    tsne_iterations: int = 750
    tsne_backend: str = "auto"  # auto (openTSNE, else scikit-learn, else exact), opentsne, sklearn, exact
    attention_examples: int = 2  # correctly and wrongly classified queries in turn
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a numeric setting out of its range (`REPORT_RANGES`) in one line, before any work."""
        check_ranges(self, REPORT_RANGES)


def _evaluation(model, store, data, cfg: ReportConfig, way: int, shot: int, out: Path, run: RunDir, device: str):
    """(EvalResult, where it came from): a reusable eval JSON of the run, or a fresh evaluation written to `out`."""
    own = run.eval_path(cfg.split, way, shot, cfg.seed)
    best_time = run.best.stat().st_mtime
    known = {f.name for f in fields(EvalResult)}
    for candidate, need_episodes in ((own, None), (out / f"eval_{own.name}", cfg.episodes)):
        if cfg.reuse_eval and candidate.is_file() and candidate.stat().st_mtime >= best_time:
            try:
                result = EvalResult(**{k: v for k, v in json.loads(candidate.read_text()).items() if k in known})
            except (TypeError, json.JSONDecodeError):  # damaged or from an older mdmf: evaluate again
                continue
            if need_episodes in (None, result.episodes):
                return result, str(candidate)
    ecfg = EvalConfig(way=way, shot=shot, queries=1, episodes=cfg.episodes, seed=cfg.seed, device=device,
                      progress=cfg.progress, keep_predictions=True)  # the figures' per-query predictions too
    result = evaluate(model, data.features, data.labels, data.prompt_embeddings, data.class_names, ecfg)
    write_result(result, out / f"eval_{own.name}", f"{run.name} ({model.config.name}) on {cfg.split}, for the report")
    return result, "computed for this report"


def _tsne(model, data, frames: torch.Tensor, prompts: torch.Tensor, cfg: ReportConfig,
          backend: str) -> tuple[np.ndarray, dict]:
    """(the videos shown, view -> their 2-D t-SNE points) for the report's t-SNE panels."""
    rows = tsne_subset(data.labels, cfg.tsne_classes, cfg.tsne_per_class, cfg.seed)
    embeddings = video_embeddings(model, frames[rows], prompts)
    points = {}
    with progress_bar(cfg.progress, f"t-SNE of {len(rows)} videos ({backend})", total=len(embeddings),
                      unit="panels") as advance:
        for name, vectors in embeddings.items():
            points[name] = embed(vectors.cpu(), backend, iterations=cfg.tsne_iterations, seed=cfg.seed).points
            advance(1)
    return rows, points


def _otam_floor(store, data, result, device: str) -> dict:
    """The untrained OTAM baseline on the store's raw CLIP features, on the episodes of `result` (same way, shot,
    seed and count): the floor beside the head."""
    otam = build_model(ModelConfig(name="otam", dim=store.meta.dim, frames=store.meta.frames))
    ecfg = EvalConfig(way=result.way, shot=result.shot, queries=result.queries, episodes=result.episodes,
                      seed=result.seed, device=device, progress=False)
    floor = evaluate(otam, data.features, data.labels, data.prompt_embeddings, data.class_names, ecfg)
    return {"model": "otam", "accuracy": floor.accuracy, "ci95": floor.ci95, "episodes": floor.episodes,
            "way": floor.way, "shot": floor.shot, "seed": floor.seed}


def make_report(cfg: ReportConfig, console: Console | None = None) -> dict:
    """Write the figures and the summary; returns the summary (also `report.json`). A folder that cannot be
    written is said before any work; a full disk midway is one line."""
    out = Path(cfg.out) if cfg.out else RunDir(cfg.run).path / "report"
    check_writable(out, "--out")
    with file_system_errors(out, "the files written before are kept: free space and run the same command again"):
        return _make_report(cfg, out, console)


def _make_report(cfg: ReportConfig, out: Path, console: Console | None) -> dict:
    # Imported here: the figures load matplotlib, only when a report is made.
    from mdmf.pipeline.apps.report_figures import attention_maps, confusion, per_class_accuracy, training_curves, tsne_panels

    console = console or Console()
    run = RunDir(cfg.run)
    model, state = run.load_model()
    train_cfg = state["train_config"]
    store = run.open_store(cfg.cache, cross_dataset=cfg.cross_dataset)
    data = store.load(cfg.split)
    way, shot = cfg.way or train_cfg["way"], cfg.shot or train_cfg["shot"]
    if cfg.episodes < 1:
        raise MdmfError(f"--episodes {cfg.episodes}: evaluate at least one episode")
    backend, warning = choose_backend(cfg.tsne_backend)  # a backend that is not installed: said before any work
    device = str(resolve_device(cfg.device))
    out.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    figures: dict[str, Path] = {}

    console.print(f"[bold]report[/] for {run} → {out}")
    curves = run.read_metrics()
    figures["curves"] = training_curves(curves, out / "curves.png", best_step=state["best"].get("step"))

    result, source = _evaluation(model, store, data, cfg, way, shot, out, run, device)
    episodes = min(cfg.episodes, result.episodes)
    if result.predictions is not None:  # evaluated just now: its predictions are the figures'
        preds = predictions_of(result, data.labels)
    else:  # a reused eval JSON holds accuracies only
        preds = predict_episodes(model, data.features, data.labels, data.prompt_embeddings, way, shot, 1, episodes,
                                 cfg.seed, device=device, progress=cfg.progress)
    split_title = f"{cfg.split}, {way}-way {shot}-shot"
    baseline = _otam_floor(store, data, result, device)
    figures["per_class"] = per_class_accuracy(result.per_class, result.accuracy, out / "per_class.png",
                                              f"per-class accuracy ({split_title}, {result.episodes} episodes)",
                                              floor=baseline["accuracy"])
    matrix = preds.confusion(len(data.class_names))
    figures["confusion"] = confusion(matrix, data.class_names, out / "confusion.png",
                                     f"confusion ({split_title}, {episodes} episodes)")

    frames = torch.as_tensor(data.features[:, 0], dtype=torch.float32, device=device)  # (V, T, D)
    prompts = torch.as_tensor(data.prompt_embeddings, dtype=torch.float32, device=device)  # (C, D)
    if warning:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    rows, points = _tsne(model, data, frames, prompts, cfg, backend)
    figures["tsne"] = tsne_panels(points, data.labels[rows], data.class_names, out / "tsne.png")

    examples, note = attention_examples(model, frames, prompts, preds, data.class_names, data.video_ids,
                                        cfg.attention_examples)
    if examples:
        figures["attention"] = attention_maps(examples, store.meta.frames, out / "attention.png", note)

    summary = {
        "run": str(run), "model": model.config.to_dict(), "store": str(store.path),
        "backbone": store.meta.backbone.get("backbone"), "train": train_cfg, "best": state["best"],
        "steps_logged": len(curves.train), "validations": curves.val,
        "evaluation": {**result.to_json(), "source": source}, "baseline": baseline,
        "predictions": {"episodes": episodes, "seed": cfg.seed, "accuracy": preds.accuracy(),
                        "per_class": preds.per_class(data.class_names),
                        "note": "the first `episodes` of the same seeded episodes as the evaluation"},
        "confusion": {"classes": data.class_names, "counts": matrix.tolist()},
        "tsne": {"videos": int(len(rows)), "classes": int(len(np.unique(data.labels[rows]))),
                 "panels": list(points), "iterations": cfg.tsne_iterations, "backend": backend},
        "attention": [{k: v for k, v in asdict(ex).items() if k != "maps"} for ex in examples],
        "attention_note": note,
        "figures": {k: v.name for k, v in figures.items()},
        "config": asdict(cfg),
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    write_summary(summary, out)
    console.print(f"{cfg.split} accuracy {result.accuracy:.2f} ± {result.ci95:.2f} % ({result.episodes} episodes, "
                  f"{source}); wrote {len(figures)} figures, report.md, report.html and report.json to {out}",
                  highlight=False)
    return summary
