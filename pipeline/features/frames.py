"""Frames of a store's videos, exactly as stage one cropped them: decoded on the fly, or read from the uint8 frame
store of `extract --save-frames`, and the eval-view features a visual encoder gives them.

Both sources give a video's crops as `(T, 3, S, S)` uint8, exactly what stage one encoded for that (video, view):
decoding goes through `mdmf.pipeline.data.views.decode_views` with the store's seed, and the frame store holds those
very crops. Train views:

* `views` (default): episode video v takes the cached view the episode sampler picked for it (one of the store's
  `--train-views`), so decoding and the frame store are interchangeable, bit for bit;
* `fresh` (decoding only): new random frame indices, crop and flip for every (episode, video), drawn from
  `view_rng(seed, "train@<episode>", video id, 0)`: still a pure function of (seed, episode, video), so resume is exact.

Val/test videos always take the eval view (fixed indices, centre crop), view 0 of the store. The frame sampling,
crop and normalisation are the store's (`frame_sampling`, `crop`, `normalize` of its extraction config; which source
a store gives is `mdmf.pipeline.features.recipe.frame_source`). Used by e2e training (its episodes:
`mdmf.pipeline.train.frame_sources`) and by the evaluation of e2e runs. Loading runs in DataLoader workers (one
decoder thread each, `mdmf.pipeline.data.decode`'s exact reader) while the main process works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader, Dataset

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.isolation import quiet_worker_init
from mdmf.pipeline.data.sampling import view_rng
from mdmf.pipeline.data.transforms import FramePreprocessor
from mdmf.pipeline.data.views import decode_views
from mdmf.visual_encoder import VisualEncoder

SOURCES = ("auto", "decode", "store")
AUGMENTS = ("views", "fresh")


@dataclass
class SplitVideos:
    """The usable videos of one split, in the order of the store's `load(split)` (row i = episode index i)."""

    split: str
    video_ids: list[str]
    paths: list[str]
    rows: np.ndarray  # row of each video in the store (frame store index)
    labels: np.ndarray


class FrameSource:
    """Reads one video's crops; picklable, so DataLoader workers carry their own copy."""

    def read(self, videos: SplitVideos, i: int, view: int, episode: int | None = None) -> torch.Tensor:
        """`(T, 3, S, S)` uint8 crops of video `i` of `videos`: cached view `view`, or (`fresh`) episode `episode`'s."""
        raise NotImplementedError


class DecodedFrames(FrameSource):
    def __init__(self, frames: int, pre: FramePreprocessor, store_seed: int, allow_flip: bool, augment: str = "views",
                 train_seed: int = 0, sampling: str = "tsn"):
        self.frames, self.pre, self.store_seed, self.allow_flip = frames, pre, store_seed, allow_flip
        self.augment, self.train_seed, self.sampling = augment, train_seed, sampling  # sampling: the store's

    def read(self, videos: SplitVideos, i: int, view: int, episode: int | None = None) -> torch.Tensor:
        vid = videos.video_ids[i]
        if videos.split != "train":
            rng = None
        elif self.augment == "fresh" and episode is not None:
            rng = view_rng(self.train_seed, f"train@{episode}", vid, 0)
        else:
            rng = view_rng(self.store_seed, "train", vid, view)
        out = decode_views(videos.paths[i], self.frames, self.pre, [rng], self.allow_flip, sampling=self.sampling)
        if out["crops"] is None:
            raise MdmfError(f"{videos.paths[i] or vid}: {out['error']} (it decoded during extraction); check --root, "
                            "or train from the frame store (`mdmf extract --save-frames`, then --frames-from store)")
        return out["crops"][0]


class StoredFrames(FrameSource):
    def __init__(self, store_path: str):
        self.store_path = str(store_path)
        self._groups: dict = {}

    def __getstate__(self) -> dict:  # open Zarr handles stay in the process that opened them
        return {"store_path": self.store_path, "_groups": {}}

    def read(self, videos: SplitVideos, i: int, view: int, episode: int | None = None) -> torch.Tensor:
        if videos.split not in self._groups:
            self._groups[videos.split] = zarr.open_group(self.store_path, mode="r")[videos.split]["frames"]
        crops = self._groups[videos.split][int(videos.rows[i]), view if videos.split == "train" else 0]
        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)  # (T, S, S, 3) -> (T, 3, S, S)


class SplitFrames(Dataset):
    """Item i: the eval view of video i, `(T, 3, S, S)` uint8 (for validation and from-frames evaluation)."""

    def __init__(self, source: FrameSource, videos: SplitVideos, indices: list[int] | None = None):
        self.source, self.videos = source, videos
        self.indices = list(range(len(videos.video_ids))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.source.read(self.videos, self.indices[j], 0)


def loader(dataset: Dataset, workers: int, batch_size: int | None = None, pin: bool = False) -> DataLoader:
    """In-order loading in `workers` processes (0: in this process); `pin` (for a CUDA device): tensors arrive in
    pinned memory, so that their copies to the device can be asynchronous."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      worker_init_fn=quiet_worker_init, prefetch_factor=2 if workers > 0 else None,
                      collate_fn=_keep if batch_size is None else None, persistent_workers=False, pin_memory=pin)


def _keep(item):
    return item


@torch.no_grad()
def encode_videos(encoder: VisualEncoder, source: FrameSource, videos: SplitVideos, indices: list[int],
                  device: torch.device, batch_videos: int, workers: int) -> np.ndarray:
    """Eval-view features `(len(indices), T, D)` of `videos[indices]`, rounded to float16 as the store holds them."""
    was_training = encoder.training
    encoder.eval()
    out = []
    for frames in loader(SplitFrames(source, videos, indices), workers, batch_size=batch_videos,
                         pin=device.type == "cuda"):
        out.append(encoder(frames.to(device, non_blocking=True)).cpu())
    encoder.train(was_training)
    return torch.cat(out).numpy().astype(np.float16) if out else np.zeros(0, np.float16)
