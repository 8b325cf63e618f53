"""Per-query predictions on seeded few-shot episodes, for confusion matrices and example figures.

The evaluator computes them (`keep_predictions`); this module puts them next to the episodes' classes and query
videos (`EpisodeSampler` with the same seed gives the same episodes), as split class ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec
from mdmf.pipeline.evaluate.episodic import EvalConfig, EvalResult, evaluate


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


@torch.no_grad()
def predict_episodes(model, features: np.ndarray, labels: np.ndarray, prompt_embeddings: np.ndarray, way: int,
                     shot: int, queries: int, episodes: int, seed: int = 0, batch_episodes: int = 500,
                     batch_videos: int = 1024, device: str = "cpu", progress: bool = False) -> EpisodePredictions:
    """features `(V, K, T, D)` (view 0 used), labels `(V,)`, prompt_embeddings `(C, D)` -> `EpisodePredictions`.

    The evaluator's own run (`mdmf.pipeline.evaluate.episodic.evaluate` with `keep_predictions`): the same episodes, PPS draws and
    predictions as `mdmf eval` with these settings (PPS draws follow `batch_episodes`: one generator per batch).
    """
    names = [str(c) for c in range(int(np.max(labels)) + 1)]
    result = evaluate(model, features, labels, prompt_embeddings, names, EvalConfig(
        way=way, shot=shot, queries=queries, episodes=episodes, seed=seed, batch_episodes=batch_episodes,
        batch_videos=batch_videos, device=device, progress=progress, keep_predictions=True))
    return predictions_of(result, labels)


def predictions_of(result: EvalResult, labels: np.ndarray) -> EpisodePredictions:
    """The `EpisodePredictions` of an evaluation run with `keep_predictions` (its episodes drawn again from its seed),
    so that a caller that evaluated already does not evaluate twice. labels `(V,)` of the evaluated split."""
    if result.predictions is None:
        raise ValueError("predictions_of needs an EvalResult evaluated with keep_predictions=True")
    batch = EpisodeSampler(labels, EpisodeSpec(result.way, result.shot, result.queries), seed=result.seed,
                           views=1).batch(0, result.episodes)
    predicted = torch.gather(batch.classes, 1, result.predictions)  # episode class index -> split class id
    return EpisodePredictions(batch.classes, batch.query, torch.gather(batch.classes, 1, batch.query_labels),
                              predicted, result.prompt_classes)
