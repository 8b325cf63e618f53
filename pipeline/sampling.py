"""TSN-style sparse frame sampling and the per-(video, view) random generator.

The video is split into T equal segments. Train views pick a random frame inside each segment; val/test views pick
each segment's centre frame. Videos with fewer than T frames repeat frames (never crash).
"""

from __future__ import annotations

import hashlib

import numpy as np


def view_rng(seed: int, split: str, video_id: str, view: int) -> np.random.Generator:
    """The generator for one sampled view of one video.

    It depends only on (seed, split, video id, view), not on the order in which videos are processed, so a resumed or
    sharded extraction draws exactly the same offsets, crops and flips as an uninterrupted one.
    """
    digest = hashlib.sha256(f"{seed}|{split}|{video_id}|{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def tsn_indices(num_frames: int, num_segments: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices, one per segment: `(T,)` int64, non-decreasing, each in `[0, num_frames)`.

    With `rng`, a uniformly random frame of each segment (train); without, the segment centre (val/test).
    """
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    edges = np.arange(num_segments + 1) * (num_frames / num_segments)  # segment i is [edges[i], edges[i+1])
    start, stop = edges[:-1], edges[1:]
    if rng is None:
        pos = (start + stop) / 2.0
    else:
        pos = start + rng.random(num_segments) * (stop - start)
    return np.clip(np.floor(pos).astype(np.int64), 0, num_frames - 1)
