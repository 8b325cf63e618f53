"""Where an episode's frame features come from: the "episode input" of the training loop (`train.loop`).

The loop is the same for both stages of `mdmf train`; only the input differs:

* `CachedFeatures` (head stage): rows of the store's cached `(V, K, T, D)` features; nothing of it trains.
* `mdmf.pipeline.train.e2e.FrameInput` (e2e): uint8 frames `(…, T, 3, S, S)` decoded (or read from the frame
  store) in worker processes, and the visual encoder, trained with the heads, in front of them.

`EpisodeInput` writes down the members the loop uses; both inputs implement it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from mdmf.pipeline.core.distributed import DistContext
from mdmf.pipeline.episodes.sampler import EpisodeBatch, EpisodeSampler
from mdmf.pipeline.features.store import FeatureStore, SplitFeatures
from mdmf.pipeline.runs import RunDir


@runtime_checkable
class EpisodeInput(Protocol):
    """What the training loop asks of an episode input."""

    encoder: nn.Module | None  # put in front of the heads (None: the input already yields features)
    uses_scaler: bool  # fp16 autocast: the loop's GradScaler is enabled
    train: SplitFeatures  # the train split (labels and prompt embeddings for the sampler and the heads)
    val: SplitFeatures  # the val split as stored (its features may be recomputed by `val_split`)
    views: int  # K: stored train views per video (the sampler draws one per episode video)

    def param_groups(self) -> list[dict]:
        """Adam parameter groups of the input's own trainable modules (beside the heads'); [] if none."""

    def chunks(self, sampler: EpisodeSampler, firsts: list[int],
               count: int) -> Iterator[tuple[int, EpisodeBatch, torch.Tensor]]:
        """For each first episode in `firsts`: (first, the batch of `count` episodes from it, its videos
        `(E·(N·K + M), …)`, supports first, then queries), in that order."""

    def val_split(self, ctx: DistContext) -> SplitFeatures:
        """The val split with features as the model sees them now (every rank calls it; rank 0 evaluates)."""

    def state_dict(self) -> dict:
        """What last.pt must hold of the input for --resume (merged into the checkpoint)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore from a checkpoint written with `state_dict`."""

    def save_best(self, run: RunDir, step: int) -> None:
        """Called just before best.pt is written at `step` (e2e: visual.pt)."""


class CachedFeatures(EpisodeInput):
    """Head stage: an episode's frame features are rows of the cached `(V, K, T, D)` float16 array."""

    encoder = None
    uses_scaler = False

    def __init__(self, store: FeatureStore, val: bool = True):
        self.train, self.val = store.load("train"), store.load("val") if val else None
        self.feats = torch.as_tensor(self.train.features)  # (V, K, T, D) float16, indexed per episode

    @property
    def views(self) -> int:
        return int(self.feats.shape[1])

    def param_groups(self) -> list[dict]:
        return []

    def chunks(self, sampler: EpisodeSampler, firsts: list[int], count: int):
        for first in firsts:
            batch = sampler.batch(first, count)
            support = self.feats[batch.support, batch.support_views]  # (E, N, K, T, D)
            query = self.feats[batch.query, batch.query_views]  # (E, M, T, D)
            yield first, batch, torch.cat([support.reshape(-1, *support.shape[-2:]),
                                           query.reshape(-1, *query.shape[-2:])])

    def val_split(self, ctx: DistContext) -> SplitFeatures:
        return self.val

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save_best(self, run: RunDir, step: int) -> None:
        pass
