"""Per-query predictions on seeded few-shot episodes, for confusion matrices and example figures.

`pipeline.evaluate` returns accuracies only; this module replays the same episodes (`EpisodeSampler` with the same
seed) through the model API (`encode` once per video, `fuse` once per support video and once per query,
`score` per episode batch) and keeps every query's true and predicted class. PPS draws use the evaluator's generator
scheme (one generator per batch of `batch_episodes`, seeded by (seed, first episode)), so with the same
`batch_episodes` the predictions, and the per-class accuracies derived from them, are the evaluator's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.episodes import EpisodeSampler, EpisodeSpec
from pipeline.evaluate import episode_generator


@dataclass
class EpisodePredictions:
    """E episodes of N classes and M queries; class ids are the split's (0..C-1), video ids rows of its features."""

    classes: torch.Tensor  # (E, N)
    query: torch.Tensor  # (E, M) video rows
    true: torch.Tensor  # (E, M) class ids
    predicted: torch.Tensor  # (E, M) class ids
    prompt_class: torch.Tensor  # (E, M) class whose prompt PPS gave the query, -1 without PPS

    def accuracy(self) -> float:
        """Percent of all queries; with a fixed M this is the mean of the per-episode accuracies."""
        return 100.0 * float((self.true == self.predicted).double().mean())

    def per_class(self, class_names: list[str]) -> dict[str, float]:
        """Class name -> percent of its queries classified right (classes that were never a query are left out)."""
        hits = np.bincount(self.true.reshape(-1).numpy(), (self.true == self.predicted).reshape(-1).numpy(),
                           minlength=len(class_names))
        count = np.bincount(self.true.reshape(-1).numpy(), minlength=len(class_names))
        return {name: 100.0 * hits[c] / count[c] for c, name in enumerate(class_names) if count[c]}

    def confusion(self, num_classes: int) -> np.ndarray:
        """`(C, C)` counts: row = true class, column = predicted class (a query can only be predicted as one of its
        episode's N classes)."""
        flat = self.true.reshape(-1).numpy() * num_classes + self.predicted.reshape(-1).numpy()
        return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _rows(fn, tensors: dict[str, torch.Tensor] | torch.Tensor, extra, batch: int) -> dict[str, torch.Tensor]:
    """`fn(rows of tensors, rows of extra)` over row batches, outputs (dicts of tensors) concatenated."""
    n = len(next(iter(tensors.values()))) if isinstance(tensors, dict) else len(tensors)
    outs = []
    for i in range(0, n, batch):
        part = {k: v[i : i + batch] for k, v in tensors.items()} if isinstance(tensors, dict) else tensors[i : i + batch]
        outs.append(fn(part, None if extra is None else extra[i : i + batch]))
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


@torch.no_grad()
def predict_episodes(model, features: np.ndarray, labels: np.ndarray, prompt_embeddings: np.ndarray, way: int,
                     shot: int, queries: int, episodes: int, seed: int = 0, batch_episodes: int = 500,
                     batch_videos: int = 1024, device: str = "cpu", advance=lambda n=1, **fields: None
                     ) -> EpisodePredictions:
    """features `(V, K, T, D)` (view 0 used), labels `(V,)`, prompt_embeddings `(C, D)` -> `EpisodePredictions`."""
    device = torch.device(device)
    model = model.to(device).eval()
    frames = torch.as_tensor(np.asarray(features[:, 0]), dtype=torch.float32, device=device)  # (V, T, D)
    prompts = torch.as_tensor(prompt_embeddings, dtype=torch.float32, device=device)  # (C, D)
    video_labels = torch.as_tensor(labels, dtype=torch.long, device=device)
    encoded = _rows(lambda f, _: model.encode(f), frames, None, batch_videos)
    support_tokens = None if model.merges_shots else _rows(lambda e, p: model.fuse(e, p, "support"), encoded,
                                                           prompts[video_labels], batch_videos)
    pps = model.query_prompt_mode == "pps"
    sim = model.pps_similarity(frames, prompts) if pps else None  # (V, C)
    sampler = EpisodeSampler(labels, EpisodeSpec(way, shot, queries), seed=seed, views=1)
    parts = []
    for start in range(0, episodes, batch_episodes):
        count = min(batch_episodes, episodes - start)
        batch = sampler.batch(start, count)
        gen = episode_generator(seed, start)  # the evaluator's PPS draws, batch for batch
        classes, query = batch.classes.to(device), batch.query.to(device)  # (E, N), (E, M)
        flat = query.reshape(-1)
        if pps:
            episode_sim = torch.gather(sim[query], 2, classes[:, None, :].expand(-1, query.shape[1], -1))  # (E, M, N)
            chosen = model.select_prompts(episode_sim, mode=model.config.pps_eval_mode, generator=gen)
            prompt_class = torch.gather(classes, 1, chosen.to(device))  # (E, M)
            q_prompts = prompts[prompt_class.reshape(-1)]
        else:
            prompt_class, q_prompts = torch.full_like(query, -1), None
        fused = model.fuse({k: v[flat] for k, v in encoded.items()}, q_prompts, "query")
        q_tokens = {k: v.reshape(*query.shape, *v.shape[1:]) for k, v in fused.items()}  # (E, M, L, D)
        if model.merges_shots:  # a class's shots are averaged before fusing: fuse per episode
            s_tokens = model.fuse_support({k: v[batch.support.to(device)] for k, v in encoded.items()},
                                          prompts[classes])  # (E, N, 1, L, D)
        else:
            s_tokens = {k: v[batch.support.to(device)] for k, v in support_tokens.items()}  # (E, N, K, L, D)
        pred = model.score(q_tokens, s_tokens).logits.argmax(-1)  # (E, M) episode class index
        parts.append((batch.classes, batch.query, torch.gather(batch.classes, 1, batch.query_labels),
                      torch.gather(classes, 1, pred).cpu(), prompt_class.cpu()))
        advance(count)
    return EpisodePredictions(*(torch.cat([p[i] for p in parts]) for i in range(5)))
