"""Few-shot episodes as index tensors into a split's feature array.

Episode `i` is a pure function of `(seed, i)`: every method, run, resume, and the reused-vs-naive evaluation see the
same episodes, and an evaluation can be cut into batches or processes without changing its number. The sampler yields
indices; the features stay where they are (one array in memory), nothing is copied per episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.errors import MdmfError


@dataclass(frozen=True)
class EpisodeSpec:
    way: int = 5
    shot: int = 1
    queries: int = 1  # query videos per class

    @property
    def queries_per_episode(self) -> int:
        return self.way * self.queries


@dataclass
class EpisodeBatch:
    """E episodes. Video indices are rows of the split's feature array; labels are 0..N-1 within each episode."""

    classes: torch.Tensor  # (E, N) class ids of the split
    support: torch.Tensor  # (E, N, K) video indices, class n of the episode in row n
    query: torch.Tensor  # (E, M) video indices
    query_labels: torch.Tensor  # (E, M) in 0..N-1
    support_views: torch.Tensor  # (E, N, K) which cached view of each video
    query_views: torch.Tensor  # (E, M)

    def __len__(self) -> int:
        return int(self.classes.shape[0])


class EpisodeSampler:
    """Samples N-way K-shot episodes with `queries` query videos per class from one split.

    Support and query videos of an episode are disjoint; classes with fewer than K + queries videos are never drawn.
    `views > 1` draws one of the cached augmented views of every video at random (training); `views == 1` uses view 0.
    """

    def __init__(self, labels: np.ndarray, spec: EpisodeSpec, seed: int = 0, views: int = 1):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.spec, self.seed, self.views = spec, int(seed), int(views)
        need = spec.shot + spec.queries
        self.by_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        self.eligible = np.array(sorted(c for c, rows in self.by_class.items() if len(rows) >= need), dtype=np.int64)
        if len(self.eligible) < spec.way:
            raise MdmfError(
                f"a {spec.way}-way {spec.shot}-shot episode with {spec.queries} queries per class needs {spec.way} "
                f"classes with at least {need} videos each; this split has {len(self.eligible)}: lower --way, --shot "
                "or --queries"
            )

    def episode(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(classes (N,), support (N, K), query (M,), support views (N, K), query views (M,)) of episode `i`."""
        s = self.spec
        rng = np.random.default_rng([self.seed, int(i)])
        classes = rng.choice(self.eligible, size=s.way, replace=False)
        support = np.empty((s.way, s.shot), np.int64)
        query = np.empty((s.way, s.queries), np.int64)
        for n, c in enumerate(classes):
            picked = rng.choice(self.by_class[int(c)], size=s.shot + s.queries, replace=False)
            support[n], query[n] = picked[: s.shot], picked[s.shot :]
        if self.views > 1:
            sv = rng.integers(0, self.views, size=support.shape)
            qv = rng.integers(0, self.views, size=s.way * s.queries)
        else:
            sv, qv = np.zeros_like(support), np.zeros(s.way * s.queries, np.int64)
        return classes, support, query.reshape(-1), sv, qv

    def batch(self, start: int, count: int) -> EpisodeBatch:
        """Episodes `start .. start+count-1`, stacked."""
        parts = [self.episode(i) for i in range(start, start + count)]
        labels = np.repeat(np.arange(self.spec.way), self.spec.queries)
        stack = lambda j: torch.from_numpy(np.stack([p[j] for p in parts]))  # noqa: E731
        return EpisodeBatch(
            classes=stack(0), support=stack(1), query=stack(2),
            query_labels=torch.from_numpy(np.tile(labels, (count, 1))),
            support_views=stack(3), query_views=stack(4),
        )
