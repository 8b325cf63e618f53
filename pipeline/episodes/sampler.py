"""Few-shot episodes as index tensors into a split's feature array.

Episode `i` is a pure function of `(seed, i)`: every method, run, resume, and the reused-vs-naive evaluation see the
same episodes, and an evaluation can be cut into batches or processes without changing its number. The sampler yields
indices; the features stay where they are (one array in memory), nothing is copied per episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mdmf.pipeline.core.errors import MdmfError


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


def _distinct_positions(rng: np.random.Generator, sizes: np.ndarray, k: int) -> np.ndarray:
    """sizes `(R,)` -> `(R, k)`: k distinct positions in `[0, size)` for every row, a uniformly random ordered sample.

    The first k steps of a Fisher–Yates shuffle, all rows at once: step i swaps slot i with a slot drawn from
    `[i, size)`. k vectorised steps, where sorting R rows of random keys was ~5x slower (and dominated the sampler).
    """
    rows, width = np.arange(len(sizes)), int(sizes.max())
    perm = np.broadcast_to(np.arange(width, dtype=np.int64), (len(sizes), width)).copy()
    steps = np.arange(k)
    swap = steps + (rng.random((len(sizes), k)) * (sizes[:, None] - steps)).astype(np.int64)  # (R, k), in [i, size)
    for i in range(k):
        drawn = perm[rows, swap[:, i]]
        perm[rows, swap[:, i]] = perm[:, i]
        perm[:, i] = drawn
    return perm[:, :k]


def plural(n: int, word: str) -> str:
    """`1 query`, `5 queries`, `2 videos`, `3 classes`."""
    if n == 1:
        return f"{n} {word}"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return f"{n} {word[:-1]}ies"
    return f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


def class_sizes(labels: np.ndarray) -> np.ndarray:
    """Videos per class `(C,)` of the classes present in `labels`."""
    return np.unique(np.asarray(labels), return_counts=True)[1]


def videos_each(sizes: np.ndarray) -> str:
    """`5 videos each`, or `4 to 6 videos each`."""
    low, high = int(sizes.min()), int(sizes.max())
    return f"{plural(high, 'video')} each" if low == high else f"{low} to {high} videos each"


def episodes_problem(labels: np.ndarray, spec: EpisodeSpec, split: str) -> str | None:
    """None when `split` has `spec.way` classes with at least shot + queries videos each, else the one line that
    says what it has and what fits (the minimum per class a split needs for a way/shot/queries)."""
    sizes = class_sizes(labels)
    need = spec.shot + spec.queries
    eligible = int((sizes >= need).sum())
    if eligible >= spec.way:
        return None
    what = (f"a {spec.way}-way {spec.shot}-shot episode with {plural(spec.queries, 'query')} per class needs "
            f"{spec.way} classes with at least {plural(need, 'video')} each")
    has = (f"split {split!r} has {plural(len(sizes), 'class')}" if split != "this"
           else f"this split has {plural(len(sizes), 'class')}")
    if eligible < len(sizes):
        has += f", {eligible} of them with {need}+ videos ({videos_each(sizes)})"
    return f"{what}; {has}: {_fix(sizes, spec)}"


def _fix(sizes: np.ndarray, spec: EpisodeSpec) -> str:
    """The options that make an episode fit classes of `sizes` videos: the fewest changes, named with values."""
    if len(sizes) < 2:
        return "an episode needs at least 2 classes"
    if int(np.sort(sizes)[-2]) < spec.shot + 1:
        return "lower --shot (2 classes need shot + 1 videos or more each)"
    way, queries = fitted_episode(sizes_to_labels(sizes), spec.shot, None, None, spec.way, spec.queries)
    changes = [f"--way {way}"] * (way < spec.way) + [f"--queries {queries}"] * (queries < spec.queries)
    return "give " + " and ".join(changes) + " (or lower)"


def sizes_to_labels(sizes: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def check_episodes_fit(labels: np.ndarray, spec: EpisodeSpec, split: str) -> None:
    """`episodes_problem` as an `MdmfError`."""
    problem = episodes_problem(labels, spec, split)
    if problem:
        raise MdmfError(problem)


def fitted_episode(labels: np.ndarray, shot: int, way: int | None, queries: int | None,
                   default_way: int = 5, default_queries: int = 5) -> tuple[int, int]:
    """(way, queries) for a split: the ones given, and for those not given (None) the defaults lowered to what the
    split holds: way to the classes with shot + 1 or more videos, queries to the most that `way` classes have
    beside `shot` (never below 1). What does not fit even so is said by `check_episodes_fit`."""
    sizes = np.sort(class_sizes(labels))[::-1]  # largest first
    if way is None:
        way = max(2, min(default_way, int((sizes >= shot + 1).sum())))
    if queries is None:
        room = int(sizes[way - 1]) - shot if len(sizes) >= way else 1  # the way-th largest class's spare videos
        queries = max(1, min(default_queries, room))
    return way, queries


def split_fits(labels: dict[str, np.ndarray], shot: int = 1, way: int | None = None,
               queries: int | None = None) -> dict[str, tuple[EpisodeSpec, str | None]]:
    """What `mdmf check-data` says of the episodes each split must hold: train the training episodes (the way and
    queries not given settled as `mdmf train` settles them), val/test the evaluation episodes of that way with 1
    query, as `mdmf train` validates and `mdmf eval --run` evaluates. Per split: (the episodes, None when they fit,
    else the problem as `episodes_problem` says it)."""
    train = labels.get("train")
    if train is not None:
        way, queries = fitted_episode(train, shot, way, queries)
    else:
        way = way or 5
    out = {}
    for split, split_labels in labels.items():
        spec = EpisodeSpec(way, shot, queries if split == "train" else 1)
        out[split] = spec, episodes_problem(split_labels, spec, split)
    return out


def fit_summary(split: str, labels: np.ndarray, spec: EpisodeSpec) -> str:
    """`train: 3-way 1-shot episodes with 4 queries per class fit (3 classes, 5 to 6 videos each)`."""
    sizes = class_sizes(labels)
    return (f"{split}: {spec.way}-way {spec.shot}-shot episodes with {plural(spec.queries, 'query')} per class fit "
            f"({plural(len(sizes), 'class')}, {videos_each(sizes)})")


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
        check_episodes_fit(self.labels, spec, "this")

    # Episodes are drawn in blocks of BLOCK, all at once, from a generator seeded by (seed, block): episode i is still a
    # pure function of (seed, i), and 10,000 episodes cost a few vectorised draws instead of 10,000 Python loops
    # (which had left a GPU evaluation waiting on the sampler).
    BLOCK = 256

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """Padded video rows of every eligible class `(C, max size)` and the class sizes `(C,)`."""
        if not hasattr(self, "_rows"):
            sizes = np.array([len(self.by_class[int(c)]) for c in self.eligible])
            rows = np.zeros((len(self.eligible), sizes.max()), np.int64)
            for j, c in enumerate(self.eligible):
                rows[j, : sizes[j]] = self.by_class[int(c)]
            self._rows, self._sizes = rows, sizes
        return self._rows, self._sizes

    def _block(self, b: int) -> tuple[np.ndarray, ...]:
        """(classes (B, N), support (B, N, K), query (B, M), support views (B, N, K), query views (B, M)) of block b."""
        cache = self.__dict__.setdefault("_blocks", {})
        if b in cache:
            return cache[b]
        s, B = self.spec, self.BLOCK
        rng = np.random.default_rng([self.seed, int(b)])
        rows, sizes = self._table()
        picked_classes = _distinct_positions(rng, np.full(B, len(self.eligible)), s.way)  # (B, N) distinct
        # (B, N, K + Q) distinct positions within each picked class
        order = _distinct_positions(rng, sizes[picked_classes].reshape(-1), s.shot + s.queries).reshape(B, s.way, -1)
        videos = rows[picked_classes[..., None], order]
        support, query = videos[..., : s.shot], videos[..., s.shot :].reshape(B, -1)
        if self.views > 1:
            sv = rng.integers(0, self.views, size=support.shape)
            qv = rng.integers(0, self.views, size=query.shape)
        else:
            sv, qv = np.zeros_like(support), np.zeros_like(query)
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[b] = (self.eligible[picked_classes], support, query, sv, qv)
        return cache[b]

    def episode(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(classes (N,), support (N, K), query (M,), support views (N, K), query views (M,)) of episode `i`."""
        b, j = divmod(int(i), self.BLOCK)
        return tuple(part[j] for part in self._block(b))

    def batch(self, start: int, count: int) -> EpisodeBatch:
        """Episodes `start .. start+count-1`, stacked."""
        first, last = start // self.BLOCK, (start + count - 1) // self.BLOCK
        blocks = [self._block(b) for b in range(first, last + 1)]
        offset = start - first * self.BLOCK
        labels = np.repeat(np.arange(self.spec.way), self.spec.queries)

        def stack(j: int) -> torch.Tensor:
            return torch.from_numpy(np.concatenate([blk[j] for blk in blocks])[offset : offset + count].copy())

        return EpisodeBatch(
            classes=stack(0), support=stack(1), query=stack(2),
            query_labels=torch.from_numpy(np.tile(labels, (count, 1))),
            support_views=stack(3), query_views=stack(4),
        )
