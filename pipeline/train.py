"""Episodic training of a few-shot head on cached features (`mdmf train --stage head`).

A run folder holds everything needed to continue or evaluate it::

    runs/<name>/config.json     the resolved training + model config
    runs/<name>/metrics.jsonl   one JSON line per optimizer step (loss parts, accuracy) and per validation
    runs/<name>/last.pt         model, optimizer, step, best score, RNG state (for --resume)
    runs/<name>/best.pt         the model with the best validation accuracy (val split, never test)

Episode `i` of training is a pure function of (seed, i), and dropout draws from torch's generator whose state is saved
in `last.pt`, so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from mdmf.base import ClassTexts
from pipeline.checkpoint import load_checkpoint, save_atomic
from pipeline.episodes import EpisodeSampler, EpisodeSpec
from pipeline.errors import MdmfError
from pipeline.evaluate import EvalConfig, evaluate
from pipeline.progress import progress_bar
from pipeline.store import FeatureStore


@dataclass
class TrainConfig:
    stage: str = "head"
    store: str = ""  # feature store path
    run_dir: str = ""
    model: dict = field(default_factory=dict)  # ModelConfig overrides (name, views, pps, distillation, ...)
    way: int = 5
    shot: int = 1
    queries: int = 5  # query videos per class at train time
    steps: int = 300  # optimizer steps
    episodes_per_step: int = 16  # gradients accumulated over this many episodes per step
    batch_episodes: int = 16  # episodes per forward pass (divides episodes_per_step)
    lr: float = 1e-4  # head stage (frozen backbone); the paper's 1e-5 is for end to end
    weight_decay: float = 0.0
    grad_clip: float | None = None
    val_every: int = 25  # steps
    val_episodes: int = 1000
    val_shot: int | None = None  # None: same as shot
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool = True

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MdmfError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_head(store: FeatureStore, overrides: dict):
    """The model for a store: D and T come from the store, everything else from `overrides` over the paper defaults."""
    from mdmf.config import ModelConfig
    from mdmf.registry import build_model

    meta = store.meta
    try:
        cfg = ModelConfig.from_dict({**overrides, "dim": int(meta["dim"]), "frames": int(meta["frames"])})
        cfg.validate()
        return build_model(cfg)
    except ValueError as err:
        raise MdmfError(f"model settings: {err}") from None


def _read_metrics(path: Path, upto_step: int) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= upto_step]


def train_head(cfg: TrainConfig, resume: bool = False, steps: int | None = None) -> dict:
    """Train (or resume) a head; returns the best validation record.

    On resume the run's saved config is used (the arguments' settings are ignored, except `progress` and `device`);
    `steps` extends (or sets) the total number of optimizer steps.
    """
    if cfg.episodes_per_step % cfg.batch_episodes:
        raise MdmfError("--episodes-per-step must be a multiple of --batch-episodes")
    run = Path(cfg.run_dir)
    last = run / "last.pt"
    if run.exists() and (run / "config.json").exists() and not resume:
        raise MdmfError(f"{run} already holds a run: add --resume to continue it, or choose another --name")
    if resume:
        if not last.is_file():
            raise MdmfError(f"{run}: nothing to resume (no last.pt); start it without --resume")
        state = load_checkpoint(last)
        cfg = TrainConfig.from_dict({**state["train_config"], "progress": cfg.progress, "device": cfg.device})
    else:
        state = None
    if steps is not None:
        cfg.steps = steps
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    store = FeatureStore.open(cfg.store)
    train, val = store.load("train"), store.load("val")
    torch.manual_seed(cfg.seed)  # initial weights and dropout: same seed, same run; the state is checkpointed
    model = build_head(store, cfg.model).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise MdmfError(f"model {cfg.model.get('name', 'mdmf')} has no trainable parameters: evaluate it directly")
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    run.mkdir(parents=True, exist_ok=True)
    metrics_path = run / "metrics.jsonl"
    step, best = 0, {"val_accuracy": -1.0, "step": 0}
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best = int(state["step"]), dict(state["best"])
        torch.set_rng_state(state["torch_rng"])
        metrics_path.write_text("".join(line + "\n" for line in _read_metrics(metrics_path, step)))
    else:
        (run / "config.json").write_text(json.dumps({"train": asdict(cfg), "model": model.config.to_dict(),
                                                     "store": store.meta["identity"]}, indent=2))
        metrics_path.write_text("")

    feats = torch.as_tensor(train.features)  # (V, K, T, D) float16, indexed per episode
    prompts = torch.as_tensor(train.prompt_embeddings, dtype=torch.float32)
    sampler = EpisodeSampler(train.labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), cfg.seed, views=feats.shape[1])
    val_cfg = EvalConfig(way=cfg.way, shot=cfg.val_shot or cfg.shot, queries=1, episodes=cfg.val_episodes,
                         seed=cfg.seed + 1, device=str(device), progress=False)
    chunks = cfg.episodes_per_step // cfg.batch_episodes

    def checkpoint(path: Path) -> None:
        save_atomic({"model": model.state_dict(), "model_config": model.config.to_dict(), "optimizer": opt.state_dict(),
                     "train_config": asdict(cfg), "step": step, "best": best, "torch_rng": torch.get_rng_state(),
                     "store_identity": store.meta["identity"]}, path)

    def validate() -> float:
        nonlocal best
        result = evaluate(model, val.features, val.labels, val.prompt_embeddings, val.class_names, val_cfg)
        model.train()
        record = {"step": step, "val_accuracy": result.accuracy, "val_ci95": result.ci95}
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if result.accuracy > best["val_accuracy"]:
            best = {"val_accuracy": result.accuracy, "val_ci95": result.ci95, "step": step}
            checkpoint(run / "best.pt")
        return result.accuracy

    start = time.perf_counter()
    model.train()
    with progress_bar(cfg.progress, f"train {cfg.stage}", total=cfg.steps, unit="steps") as advance:
        advance(step)
        while step < cfg.steps:
            opt.zero_grad(set_to_none=True)
            totals: dict[str, float] = {}
            correct = seen = 0
            for c in range(chunks):
                first = step * cfg.episodes_per_step + c * cfg.batch_episodes
                batch = sampler.batch(first, cfg.batch_episodes)
                support = feats[batch.support, batch.support_views].float().to(device)  # (E, N, K, T, D)
                query = feats[batch.query, batch.query_views].float().to(device)  # (E, M, T, D)
                scores = model(support, prompts[batch.classes].to(device), query,
                               generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + first),
                               class_texts=ClassTexts(prompts.to(device), batch.classes.to(device)))
                labels = batch.query_labels.to(device)
                loss, parts = model.loss(scores, labels)
                (loss / chunks).backward()
                for k, v in {"loss": float(loss.detach()), **parts}.items():
                    totals[k] = totals.get(k, 0.0) + float(v) / chunks
                correct += int((scores.logits.argmax(-1) == labels).sum())
                seen += labels.numel()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            if not all(np.isfinite(v) for v in totals.values()):
                raise MdmfError(f"training diverged at step {step} (loss {totals}); lower --lr")
            record = {"step": step, "episodes": step * cfg.episodes_per_step, **totals,
                      "train_accuracy": 100.0 * correct / seen, "seconds": round(time.perf_counter() - start, 3)}
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            fields_ = {"loss": totals["loss"], "acc": record["train_accuracy"]}
            if step % cfg.val_every == 0 or step == cfg.steps:
                fields_["val"] = validate()
                checkpoint(last)
            advance(1, **fields_)
    return best
