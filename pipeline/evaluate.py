"""Few-shot evaluation: many seeded episodes, accuracy with a 95% interval, per-class accuracy.

The fast path reuses all work that does not depend on the episode. In eval mode (dropout off, batch-norm on running
statistics) this reuse is exact:
* `encode` (temporal context) runs once per video;
* a support video's fused tokens depend only on the video and its own class prompt: computed once per video;
* a query video's fused tokens depend only on the video and the prompt PPS gives it: computed once per distinct
  (video, prompt) pair that the episodes ever ask for;
* only `score` (prototypes, OTAM, fusion) runs per episode, batched over many episodes.
The naive path (`reuse=False`) runs the model's full `forward` on every episode; both give the same predictions.
Training cannot reuse like this: batch-norm in train mode couples the videos of an episode.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from pipeline.episodes import EpisodeBatch, EpisodeSampler, EpisodeSpec
from pipeline.progress import progress_bar


@dataclass
class EvalConfig:
    way: int = 5
    shot: int = 1
    queries: int = 1
    episodes: int = 10_000
    seed: int = 0
    batch_episodes: int = 500  # episodes scored per batch
    batch_videos: int = 1024  # videos per encode/fuse forward pass
    reuse: bool = True
    device: str = "cpu"
    progress: bool = True


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

    def to_json(self) -> dict:
        return asdict(self)


def _generator(seed: int, start: int) -> torch.Generator:
    # One generator per episode batch, a function of (seed, first episode): batching is the same in both paths.
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(start)) % (2**63))


def _gather(tokens: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {view: t[index] for view, t in tokens.items()}


@torch.no_grad()
def _batched(fn, n: int, batch: int, *tensors):
    """Apply `fn` to row-batches of `tensors` and concatenate the resulting dicts."""
    outs = [fn(*(t[i : i + batch] if t is not None else None for t in tensors)) for i in range(0, n, batch)]
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


@torch.no_grad()
def evaluate(model, features: np.ndarray, labels: np.ndarray, prompt_embeddings: np.ndarray,
             class_names: list[str], cfg: EvalConfig) -> EvalResult:
    """Evaluate `model` (a `FewShotMethod`) on `cfg.episodes` episodes drawn from one split.

    features `(V, K, T, D)` (view 0 is used), labels `(V,)` class ids, prompt_embeddings `(C, D)`.
    """
    import time

    start_time = time.perf_counter()
    device = torch.device(cfg.device)
    model = model.to(device).eval()
    frames = torch.as_tensor(np.asarray(features[:, 0]), dtype=torch.float32, device=device)  # (V, T, D)
    prompts = torch.as_tensor(prompt_embeddings, dtype=torch.float32, device=device)  # (C, D)
    video_labels = torch.as_tensor(labels, dtype=torch.long, device=device)
    sampler = EpisodeSampler(labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), seed=cfg.seed, views=1)
    per_episode = torch.zeros(cfg.episodes, dtype=torch.float64)
    class_hits = torch.zeros(len(class_names), dtype=torch.float64)
    class_count = torch.zeros(len(class_names), dtype=torch.float64)

    if cfg.reuse:
        encoded = _batched(model.encode, frames.shape[0], cfg.batch_videos, frames)
        support_tokens = _batched(lambda enc_f, p: model.fuse(enc_f, p, role="support"), frames.shape[0],
                                  cfg.batch_videos, _DictRows(encoded), prompts[video_labels])
        sim = model.pps_similarity(frames, prompts) if getattr(model, "query_prompt_mode", "none") == "pps" else None
        query_cache = _QueryTokenCache(model, encoded, prompts, cfg.batch_videos)

    with progress_bar(cfg.progress, f"eval {cfg.way}-way {cfg.shot}-shot", total=cfg.episodes, unit="episodes") as advance:
        for start in range(0, cfg.episodes, cfg.batch_episodes):
            count = min(cfg.batch_episodes, cfg.episodes - start)
            batch = sampler.batch(start, count)
            gen = _generator(cfg.seed, start)
            if cfg.reuse:
                logits = _score_reused(model, batch, support_tokens, sim, query_cache, gen, device)
            else:
                logits = _score_naive(model, batch, frames, prompts, gen, device)
            pred = logits.argmax(-1).cpu()  # (E, M)
            correct = (pred == batch.query_labels).double()
            per_episode[start : start + count] = correct.mean(-1)
            true_class = torch.gather(batch.classes, 1, batch.query_labels)  # (E, M) split class ids
            class_hits.index_add_(0, true_class.reshape(-1), correct.reshape(-1))
            class_count.index_add_(0, true_class.reshape(-1), torch.ones_like(correct.reshape(-1)))
            advance(count, acc=100.0 * float(per_episode[: start + count].mean()))

    acc = float(per_episode.mean()) * 100.0
    std = float(per_episode.std(unbiased=True)) * 100.0 if cfg.episodes > 1 else 0.0
    return EvalResult(
        accuracy=acc, ci95=1.96 * std / math.sqrt(cfg.episodes), episodes=cfg.episodes, way=cfg.way, shot=cfg.shot,
        queries=cfg.queries, seed=cfg.seed,
        per_class={name: 100.0 * float(class_hits[c] / class_count[c])
                   for c, name in enumerate(class_names) if class_count[c] > 0},
        seconds=time.perf_counter() - start_time,
    )


class _DictRows:
    """Row-slicing view over a dict of equally long tensors (so `_batched` can slice it like a tensor)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __getitem__(self, index):
        return {k: v[index] for k, v in self.tensors.items()}


class _QueryTokenCache:
    """Fused query tokens, computed once per distinct (video, prompt class) pair; class -1 means no prompt."""

    def __init__(self, model, encoded: dict[str, torch.Tensor], prompts: torch.Tensor, batch_videos: int):
        self.model, self.encoded, self.prompts, self.batch = model, encoded, prompts, batch_videos
        self.keys = torch.zeros(0, dtype=torch.long)  # sorted video * (C + 1) + (class + 1)
        self.tokens: dict[str, torch.Tensor] | None = None
        self.width = prompts.shape[0] + 1

    def lookup(self, videos: torch.Tensor, classes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tokens of each (video, class) pair, `(…, L, D)` per view, shaped like `videos`."""
        keys = (videos.cpu() * self.width + classes.cpu() + 1).reshape(-1)
        new = torch.unique(keys)
        if self.keys.numel():
            new = new[~torch.isin(new, self.keys)]
        if new.numel():
            self._add(new)
        pos = torch.searchsorted(self.keys, keys)
        return {k: v[pos].reshape(*videos.shape, *v.shape[1:]) for k, v in self.tokens.items()}

    def _add(self, keys: torch.Tensor) -> None:
        device = self.prompts.device
        vids, cls = (keys // self.width).to(device), (keys % self.width - 1).to(device)
        rows = _DictRows(self.encoded)
        outs = []
        for i in range(0, len(keys), self.batch):
            v, c = vids[i : i + self.batch], cls[i : i + self.batch]
            p = None if bool((c < 0).all()) else self.prompts[c.clamp(min=0)]
            outs.append(self.model.fuse(rows[v], p, role="query"))
        fresh = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
        if self.tokens is None:
            merged_keys, merged = keys, fresh
        else:
            merged_keys = torch.cat([self.keys, keys])
            merged = {k: torch.cat([self.tokens[k], fresh[k]]) for k in fresh}
        order = torch.argsort(merged_keys)
        self.keys = merged_keys[order]
        self.tokens = {k: v[order.to(v.device)] for k, v in merged.items()}


def _score_reused(model, batch: EpisodeBatch, support_tokens, sim, query_cache, gen, device) -> torch.Tensor:
    classes = batch.classes.to(device)  # (E, N)
    query = batch.query.to(device)  # (E, M)
    if sim is not None:
        episode_sim = torch.gather(sim[query], 2, classes[:, None, :].expand(-1, query.shape[1], -1))  # (E, M, N)
        chosen = model.select_prompts(episode_sim, mode=model.config.pps_eval_mode, generator=gen)  # (E, M)
        query_class = torch.gather(classes, 1, chosen.to(device))
    else:
        query_class = torch.full_like(query, -1)
    q_tokens = query_cache.lookup(query, query_class)
    s_tokens = _gather(support_tokens, batch.support.to(device))  # (E, N, K, L, D)
    return model.score(q_tokens, s_tokens).logits


def _score_naive(model, batch: EpisodeBatch, frames, prompts, gen, device) -> torch.Tensor:
    support = frames[batch.support.to(device)]  # (E, N, K, T, D)
    query = frames[batch.query.to(device)]  # (E, M, T, D)
    class_prompts = prompts[batch.classes.to(device)]  # (E, N, D)
    return model(support, class_prompts, query, generator=gen).logits


def evaluate_split(model, store, split: str, cfg: EvalConfig) -> EvalResult:
    """Evaluate `model` on one split of a `FeatureStore`."""
    data = store.load(split)
    return evaluate(model, data.features, data.labels, data.prompt_embeddings, data.class_names, cfg)


def load_run_model(run_dir):
    """The best model of a run folder and the store it was trained on."""
    from pathlib import Path

    from mdmf.config import ModelConfig
    from mdmf.registry import build_model
    from pipeline.checkpoint import load_checkpoint
    from pipeline.errors import MdmfError
    from pipeline.store import FeatureStore

    run_dir = Path(run_dir)
    ckpt_path = run_dir / "best.pt"
    if not ckpt_path.is_file():
        raise MdmfError(f"{run_dir}: no best.pt; is this a run folder of `mdmf train` that reached a validation?")
    state = load_checkpoint(ckpt_path)
    model = build_model(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model, state


def write_result(result: EvalResult, path, title: str) -> None:
    """The result as JSON at `path` and as a plain-text table beside it (`.txt`)."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2))
    lines = [title, f"{result.way}-way {result.shot}-shot, {result.episodes} episodes, seed {result.seed}",
             f"accuracy {result.accuracy:.2f} ± {result.ci95:.2f} % (95% interval)", "", "per class:"]
    width = max((len(c) for c in result.per_class), default=5)
    lines += [f"  {name:<{width}}  {acc:6.2f}" for name, acc in sorted(result.per_class.items())]
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
