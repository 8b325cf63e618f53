"""One video, K views -> the frames stage one encodes: frame indices, crops, and what went wrong.

The only place that turns a (video, view) into crops: extraction, e2e decoding (`pipeline.train`) and `predict`
(`pipeline.features.video_encoder`) all come through here, so their frames are the same for the same view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mdmf.pipeline.data.decode import VideoReadError, clean_reason, open_video, read_frames
from mdmf.pipeline.data.sampling import frame_indices
from mdmf.pipeline.data.transforms import FramePreprocessor, ViewAugment

# What became of a video: decoded (OK), not decodable (FAILED), or fewer frames than sampled, frames repeated (SHORT).
# The feature store records these codes per video (and 0 for pending).
OK, FAILED, SHORT = 1, 2, 3


def decode_views(path: str, frames: int, pre: FramePreprocessor, rngs: list, allow_flip: bool,
                 sampling: str = "tsn") -> dict:
    """Decode and crop one video once per entry of `rngs`: a generator draws a train view (frame indices by
    `sampling`, see `mdmf.pipeline.data.sampling.frame_indices`, then crop and flip if allowed, in that order from the one
    generator); None gives the eval view (fixed indices, centre crop). `pre` holds the crop and normalisation.

    Returns {"status", "error", "crops" `(K, T, 3, S, S)` uint8 or None, "indices" `(K, T)` int32}. Stage two's
    end-to-end training decodes through here too, so its frames are exactly what stage one encoded.
    """
    k = len(rngs)
    out = {"status": OK, "error": "", "crops": None, "indices": np.full((k, frames), -1, np.int32)}
    try:
        if not path:
            raise VideoReadError("file not found under the dataset root")
        reader = open_video(Path(path))
        n = len(reader)
        augments = []
        for v, rng in enumerate(rngs):
            idx = frame_indices(sampling, n, frames, rng)
            aug = ViewAugment.random(rng, allow_flip) if rng is not None else ViewAugment()
            augments.append(aug)
            out["indices"][v] = idx
        # one read for all views: a video too big to keep decoded is decoded once more, not once per view
        decoded = read_frames(reader, out["indices"].reshape(-1))
        decoded = decoded.reshape(k, frames, *decoded.shape[1:])
        out["crops"] = torch.stack([pre.crop(f, aug) for f, aug in zip(decoded, augments)])  # (K, T, 3, S, S) uint8
        out["status"] = SHORT if n < frames else OK
    except VideoReadError as err:
        out["status"], out["error"] = FAILED, str(err)
    except Exception as err:  # an unexpected decoder failure must not stop a 2-hour run
        text = str(err).strip().splitlines()
        out["status"], out["error"] = FAILED, clean_reason(f"{type(err).__name__}: {text[0] if text else ''}")
    if out["status"] == FAILED:  # no frames were encoded: as a video whose decoder crashed records it
        out["indices"][:] = -1
    return out
