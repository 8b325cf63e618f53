"""Few-shot evaluation: many seeded episodes, accuracy with a 95% interval, per-class accuracy.

The episodes are scored by `pipeline.episodes.scoring`: by default with every piece of work that does not depend on
the episode done once (`reuse`), or with the model's full `forward` on every episode (`reuse=False`, for checking);
both give the same predictions. `benchmarks/eval.py` times the first against one pass over the distinct work and
against the second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.limits import COUNT, EPISODES, NONNEGATIVE, check_ranges
from mdmf.pipeline.core.progress import progress_bar
from mdmf.pipeline.episodes.sampler import EpisodeBatch, EpisodeSampler, EpisodeSpec
from mdmf.pipeline.episodes.scoring import naive_logits, reused_logits


# The allowed values of EvalConfig's numeric settings (`mdmf.pipeline.core.limits`); None: the default.
EPISODE_RANGES = {**EPISODES, "episodes": COUNT, "seed": NONNEGATIVE, "batch_episodes": COUNT}  # as EvalRequest's
EVAL_RANGES = {**EPISODE_RANGES, "batch_videos": COUNT, "score_episodes": COUNT}


@dataclass
class EvalConfig:
    way: int = 5
    shot: int = 1
    queries: int = 1
    episodes: int = 10_000
    seed: int = 0
    batch_episodes: int = 500  # episodes per sampled batch (one PPS generator each; the naive path's forward pass)
    batch_videos: int = 1024  # videos per encode/fuse forward pass
    score_episodes: int | None = None  # episodes per `score` call; None: ~32 MB of tokens on CPU, a batch on GPU
    reuse: bool = True
    device: str = "auto"  # as --device everywhere (core/devices.resolve_device): auto = this rank's GPU, else the CPU
    progress: bool = True
    keep_predictions: bool = False  # EvalResult.predictions / prompt_classes: per query (for reports, not in JSON)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a numeric setting out of its range (`EVAL_RANGES`) in one line, before any episode."""
        check_ranges(self, EVAL_RANGES)


@dataclass
class EvalResult:
    accuracy: float  # percent
    ci95: float  # percent, 1.96·σ/√n over per-episode accuracies
    episodes: int
    way: int
    shot: int
    queries: int
    seed: int
    per_class: dict[str, float] = field(default_factory=dict)  # class name -> percent
    seconds: float = 0.0
    predictions: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (episodes, M) long
    # (episodes, M) long: the split class whose prompt PPS gave each query, -1 for none
    prompt_classes: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        per_query = ("predictions", "prompt_classes")
        return {k: v for k, v in asdict(replace(self, predictions=None, prompt_classes=None)).items()
                if k not in per_query}


@torch.no_grad()
def has_reusable_work(model, shot: int) -> bool:
    """Whether `evaluate` can do the episode-independent work once: a method that averages a class's shots before
    fusing them (CLIP-FSAR's merge_before) has no per-video support tokens to reuse at K > 1, so its episodes run
    whole."""
    return not (model.merges_shots and shot > 1)


def evaluate(model, features: np.ndarray, labels: np.ndarray, prompt_embeddings: np.ndarray,
             class_names: list[str], cfg: EvalConfig) -> EvalResult:
    """Evaluate `model` (a `FewShotMethod`) on `cfg.episodes` episodes drawn from one split.

    features `(V, K, T, D)` (view 0 is used), labels `(V,)` class ids, prompt_embeddings `(C, D)`.
    """
    import time

    start_time = time.perf_counter()
    device = resolve_device(cfg.device)
    model = model.to(device).eval()
    frames = torch.as_tensor(np.asarray(features[:, 0]), dtype=torch.float32, device=device)  # (V, T, D)
    prompts = torch.as_tensor(prompt_embeddings, dtype=torch.float32, device=device)  # (C, D)
    sampler = EpisodeSampler(labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), seed=cfg.seed, views=1)
    title = f"eval {cfg.way}-way {cfg.shot}-shot"
    if cfg.reuse and has_reusable_work(model, cfg.shot):
        logits = reused_logits(model, sampler, frames, prompts, torch.as_tensor(labels, dtype=torch.long), cfg, title)
    else:
        logits = naive_logits(model, sampler, frames, prompts, cfg)

    per_episode = torch.zeros(cfg.episodes, dtype=torch.float64)
    predictions = torch.zeros(cfg.episodes, sampler.spec.queries_per_episode, dtype=torch.long)
    prompt_classes = torch.zeros_like(predictions)
    class_hits = torch.zeros(len(class_names), dtype=torch.float64)
    class_count = torch.zeros(len(class_names), dtype=torch.float64)

    def record(start: int, batch: EpisodeBatch, pred: torch.Tensor, prompt_class: torch.Tensor) -> None:
        pred = pred.cpu()  # (E, M)
        count = len(batch)
        predictions[start : start + count] = pred
        prompt_classes[start : start + count] = prompt_class.cpu()
        correct = (pred == batch.query_labels).double()
        per_episode[start : start + count] = correct.mean(-1)
        true_class = torch.gather(batch.classes, 1, batch.query_labels)  # (E, M) split class ids
        class_hits.index_add_(0, true_class.reshape(-1), correct.reshape(-1))
        class_count.index_add_(0, true_class.reshape(-1), torch.ones_like(correct.reshape(-1)))
        advance(count, acc=100.0 * float(per_episode[: start + count].mean()))

    with progress_bar(cfg.progress, title + (": scoring" if cfg.reuse else ""), total=cfg.episodes,
                      unit="episodes") as advance:
        # Bookkeeping runs one batch behind, so that on a GPU the next batch is queued before this one is waited for.
        behind = None
        for start, batch, batch_logits, prompt_class in logits:
            pred = batch_logits.argmax(-1)
            if behind is not None:
                record(*behind)
            behind = (start, batch, pred, prompt_class)
        if behind is not None:
            record(*behind)

    acc = float(per_episode.mean()) * 100.0
    std = float(per_episode.std(unbiased=True)) * 100.0 if cfg.episodes > 1 else 0.0
    return EvalResult(
        accuracy=acc, ci95=1.96 * std / math.sqrt(cfg.episodes), episodes=cfg.episodes, way=cfg.way, shot=cfg.shot,
        queries=cfg.queries, seed=cfg.seed,
        per_class={name: 100.0 * float(class_hits[c] / class_count[c])
                   for c, name in enumerate(class_names) if class_count[c] > 0},
        seconds=time.perf_counter() - start_time,
        predictions=predictions if cfg.keep_predictions else None,
        prompt_classes=prompt_classes if cfg.keep_predictions else None,
    )


def evaluate_split(model, store, split: str, cfg: EvalConfig) -> EvalResult:
    """Evaluate `model` on one split of a `FeatureStore`."""
    data = store.load(split)
    return evaluate(model, data.features, data.labels, data.prompt_embeddings, data.class_names, cfg)


def write_result(result: EvalResult, path, title: str) -> None:
    """The result as JSON at `path` and as a plain-text table beside it (`.txt`)."""
    import json
    from pathlib import Path

    from mdmf.pipeline.core.paths import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result.to_json(), indent=2))
    lines = [title, f"{result.way}-way {result.shot}-shot, {result.episodes} episodes, seed {result.seed}",
             f"accuracy {result.accuracy:.2f} ± {result.ci95:.2f} % (95% interval)", "", "per class:"]
    width = max((len(c) for c in result.per_class), default=5)
    lines += [f"  {name:<{width}}  {acc:6.2f}" for name, acc in sorted(result.per_class.items())]
    write_text_atomic(path.with_suffix(".txt"), "\n".join(lines) + "\n")
