"""Frame sampling (which T of a video's n frames a view encodes) and the per-(video, view) random generator.

Two samplers, chosen by `ExtractConfig.frame_sampling` (recorded in the store identity):

* `tsn` (default, the paper's): the video is split into T equal segments. Train views pick a random frame inside each
  segment; val/test views pick each segment's centre frame (`tsn_indices`).
* `reference`: what the authors' released code does (`video_reader.py`, `VideoDataset.get_seq`): T frames evenly
  spaced by `linspace(start, end, T)` with a jittered start and end at train, fixed at test (`reference_indices`).

Both draw only from the generator they are given (`view_rng`: a pure function of seed, split, video and view), so a
resumed or sharded extraction samples exactly the frames of an uninterrupted one. Videos with fewer than T frames
repeat frames (never crash).
"""

from __future__ import annotations

import hashlib

import numpy as np

FRAME_SAMPLINGS = ("tsn", "reference")


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


def reference_indices(num_frames: int, num_segments: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """The authors' sampler: `(T,)` int64, non-decreasing, each in `[0, num_frames)`.

    As in their `get_seq` (n = num_frames, T = num_segments):

    * train (`rng` given): `excess = n - T` (the frames beyond T) and `pad = int(min(5, excess / 2))` (truncated
      toward zero). If `pad < 1`, `start, end = 0, n - 1`; otherwise `start` is uniform on the integers
      `0..pad` and then `end` uniform on `n-1-pad..n-1` (both ends inclusive, Python's `random.randint` there,
      two draws from `rng` here: start first);
    * val/test (`rng` None): `start, end = 1, n - 2`;
    * then, in both, if `end - start < T`: `start, end = 0, n - 1` (the whole video);
    * indices `int(x)` (truncation) of each `x` of `np.linspace(start, end, T)` (endpoints included).

    n == T gives `0..T-1` (their explicit `range(n)` case is the same numbers). The authors never see n < T (their
    loader drops such videos); here the same formula then repeats frames: `linspace(0, n-1, T)` truncated.
    T == 1: the authors draw one frame uniformly from `start..end-1` (at test too); here train draws it the same
    way from `rng` and val/test takes the middle of that range, `(start + end - 1) // 2`, so eval views stay fixed.
    """
    n, t = num_frames, num_segments
    if n < 1:
        raise ValueError(f"a video needs at least one frame, got {n}")
    if t < 1:
        raise ValueError(f"num_segments must be >= 1, got {t}")
    if rng is not None:
        pad = int(min(5, (n - t) / 2))
        if pad < 1:
            start, end = 0, n - 1
        else:
            start = int(rng.integers(0, pad + 1))
            end = int(rng.integers(n - 1 - pad, n))
    else:
        start, end = 1, n - 2
    if end - start < t:
        start, end = 0, n - 1
    if t == 1 and end > start:
        pick = int(rng.integers(start, end)) if rng is not None else (start + end - 1) // 2
        return np.asarray([pick], np.int64)
    return np.linspace(start, end, num=t).astype(np.int64)  # non-negative: astype truncates, as int() does


def frame_indices(sampling: str, num_frames: int, num_segments: int,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """`(T,)` int64 indices of one view by the named sampler (`FRAME_SAMPLINGS`); `rng` None = the eval view."""
    if sampling == "tsn":
        return tsn_indices(num_frames, num_segments, rng)
    if sampling == "reference":
        return reference_indices(num_frames, num_segments, rng)
    raise ValueError(f"frame sampling {sampling!r}: use one of {', '.join(FRAME_SAMPLINGS)}")
