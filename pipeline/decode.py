"""Reading frames from video files with decord (one thread per reader; parallelism comes from worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class VideoReadError(Exception):
    """A video that could not be opened or decoded; the message is the reason recorded in the store."""


def _quiet_decord():
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg warnings on damaged files would flood the progress bar
    return decord


def open_video(path: Path):
    """A decord `VideoReader` for `path`; raises `VideoReadError` with a short reason."""
    path = Path(path)
    if not path.exists():
        raise VideoReadError("file not found")
    if path.stat().st_size == 0:
        raise VideoReadError("empty file (0 bytes)")
    decord = _quiet_decord()
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
    except Exception as err:  # decord raises DECORDError as well as RuntimeError: catch everything per video
        raise VideoReadError(f"cannot open: {_first_line(err)}") from None
    if len(reader) < 1:
        raise VideoReadError("no decodable frames")
    return reader


def read_frames(reader, indices: np.ndarray) -> np.ndarray:
    """Frames at `indices` as `(T, H, W, 3)` uint8 RGB; raises `VideoReadError`."""
    try:
        frames = reader.get_batch([int(i) for i in indices]).asnumpy()
    except Exception as err:
        raise VideoReadError(f"cannot decode frames: {_first_line(err)}") from None
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise VideoReadError(f"decoder returned frames of shape {frames.shape}")
    return frames


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
