"""The frames of training episodes for end-to-end training: `EpisodeFrames` loads one chunk of an optimizer step's
episodes from a frame source of `mdmf.pipeline.features.frames` (decoded, or the frame store), support videos first.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mdmf.pipeline.episodes.sampler import EpisodeBatch, EpisodeSampler
from mdmf.pipeline.features.frames import FrameSource, SplitVideos

class EpisodeFrames(Dataset):
    """Item j: the frames of the episodes `first_j .. first_j + count - 1` (one chunk of an optimizer step).

    Returns (first, EpisodeBatch, frames `(E·(N·K + M), T, 3, S, S)` uint8): all support videos in `(E, N, K)`
    order, then all queries in `(E, M)` order.
    """

    def __init__(self, source: FrameSource, videos: SplitVideos, sampler: EpisodeSampler, firsts: list[int],
                 count: int):
        self.source, self.videos, self.sampler, self.firsts, self.count = source, videos, sampler, firsts, count

    def __len__(self) -> int:
        return len(self.firsts)

    def __getitem__(self, j: int):
        first = self.firsts[j]
        batch = self.sampler.batch(first, self.count)
        return first, batch, episode_frames(self.source, self.videos, batch, first)


def episode_frames(source: FrameSource, videos: SplitVideos, batch: EpisodeBatch, first: int) -> torch.Tensor:
    E = len(batch)
    items = []
    for e in range(E):
        for i, v in zip(batch.support[e].reshape(-1).tolist(), batch.support_views[e].reshape(-1).tolist()):
            items.append(source.read(videos, i, v, first + e))
    for e in range(E):
        for i, v in zip(batch.query[e].tolist(), batch.query_views[e].tolist()):
            items.append(source.read(videos, i, v, first + e))
    return torch.stack(items)
