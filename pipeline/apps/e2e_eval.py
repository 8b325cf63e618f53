"""Evaluating an e2e run (`mdmf eval --run runs/<e2e-run>`): its heads with its fine-tuned visual encoder.

Two paths that must agree on the same episodes:
* cached (default): re-extract the split with `--weights runs/<name>` into a store inside the run
  (`runs/<name>/stores/<split>-<weights sha>`, reused while visual.pt is unchanged), then the usual fast evaluation;
* `--from-frames`: encode the split's eval views with the encoder directly (decoded or from the frame store) and
  evaluate on those features, rounded to float16 as a store would hold them.
Both see the same crops (stage one's decoding) and the same weights; they differ only by float rounding of batched
encoder passes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mdmf.pipeline.core.checkpoint import load_checkpoint
from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.evaluate.episodic import EvalConfig, EvalResult, evaluate, evaluate_split
from mdmf.pipeline.features.backbones import RUN_VISUAL, finetuned_sha256, load_backbone, resolve_backbone, run_backbone
from mdmf.pipeline.features.extract import run_extract
from mdmf.pipeline.features.frames import encode_videos
from mdmf.pipeline.features.recipe import ExtractConfig, extract_config_of, frame_source, preprocessor_of, split_videos
from mdmf.pipeline.features.store import FeatureStore
from mdmf.pipeline.runs import RunDir
from mdmf.visual_encoder import VisualEncoder


def run_weights_sha256(run: Path | RunDir) -> str:
    """The weights sha256 a store extracted with `--weights run` records (base weights + visual.pt)."""
    visual = RunDir.of(run).visual
    record = load_checkpoint(visual)
    return finetuned_sha256(record["backbone"]["weights_sha256"], visual)


def _check_run(run: Path | RunDir, state: dict) -> FeatureStore:
    """The run's training store, after checking that visual.pt belongs to best.pt."""
    visual = RunDir.of(run).visual
    if not visual.is_file():
        raise MdmfError(f"{run}: no {RUN_VISUAL} beside best.pt; was the run interrupted while saving? resume it")
    step = load_checkpoint(visual)["step"]
    if step != state["step"]:
        raise MdmfError(f"{run}: {RUN_VISUAL} is from step {step} but best.pt from step {state['step']} "
                        "(interrupted while saving); resume the run to write both again")
    return RunDir.of(run).open_store(state=state)


def extract_run_store(run: Path | RunDir, split: str, root: str | None = None, workers: int = 2, device: str = "auto",
                      progress: bool = False) -> FeatureStore:
    """`mdmf extract --weights runs/<name>` for one split, into the run folder (done once per visual.pt)."""
    run = RunDir.of(run)
    train_store = _check_run(run, run.best_state())
    base = extract_config_of(train_store)
    out = run.run_store(split, run_weights_sha256(run))
    cfg = ExtractConfig(dataset=base.dataset, root=root or base.root, splits_dir=base.splits_dir, out=str(out),
                        backbone=run_backbone(str(run)), weights=str(run), frames=base.frames,
                        train_views=base.train_views, seed=base.seed, prompt_template=base.prompt_template,
                        resize_ratio=base.resize_ratio, frame_sampling=base.frame_sampling, normalize=base.normalize,
                        crop=base.crop, splits=(split,), workers=workers, device=device,
                        progress=progress)
    run_extract(cfg)
    return FeatureStore.open(out)


def evaluate_run_cached(run: Path | RunDir, split: str, cfg: EvalConfig, root: str | None = None, workers: int = 2,
                        progress: bool = False) -> EvalResult:
    run = RunDir.of(run)
    store = extract_run_store(run, split, root, workers, cfg.device, progress)
    model, _ = run.load_model()
    return evaluate_split(model, store, split, cfg)


def evaluate_run_from_frames(run: Path | RunDir, split: str, cfg: EvalConfig, root: str | None = None, workers: int = 2,
                             frames_from: str = "auto", batch_videos: int = 32) -> EvalResult:
    """The run's heads on the split's eval views encoded by its fine-tuned visual encoder (no store written)."""
    run = RunDir.of(run)
    model, state = run.load_model()
    store = _check_run(run, state)
    ecfg = extract_config_of(store)
    device = resolve_device(cfg.device)
    backbone = load_backbone(resolve_backbone(run_backbone(str(run)), str(run)), device=device)
    pre = preprocessor_of(store, ecfg)
    encoder = VisualEncoder(backbone.model.visual, pre).eval()
    data = store.load(split)
    videos = split_videos(store, split, data, root, ecfg)
    source, _ = frame_source(store, ecfg, pre, frames_from, videos=[videos])
    with torch.no_grad():
        feats = encode_videos(encoder, source, videos, list(range(len(videos.video_ids))), device, batch_videos,
                              workers)
    return evaluate(model, feats[:, None], data.labels, data.prompt_embeddings, data.class_names, cfg)
