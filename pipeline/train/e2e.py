"""Stage two end to end (`mdmf train --stage e2e`): the CLIP visual encoder is fine-tuned together with the heads.

The heads are the same model class as in the head stage; in front of them sits `mdmf.visual_encoder.VisualEncoder`
(model code, pure torch), which computes exactly what stage one computed for a crop (the store's normalisation, then
`model.visual`). Everything else comes from the stage-one store: the split files' videos and labels, the train
views' augmentation (seed), the prompt embeddings (the text encoder is never run again), and the weights the visual
encoder starts from (checked by their sha256): all read through `mdmf.pipeline.features.recipe`, the one description
of how a store was made, which the evaluation of e2e runs reads too.

Decisions, each an option of `E2EConfig`:
* Learning rates: Adam, `backbone_lr` 1e-5 (the paper's single rate); the heads' rate is the run's `--lr` (1e-5 too
  by default, so a default run is the paper's setting). Gradient accumulation and clipping are the shared loop's.
* AMP (`amp`): bf16 autocast on CUDA when the GPU supports it (no grad scaler needed), else fp16 with a
  `GradScaler`; off on the CPU. Only the visual encoder runs under autocast: the heads (OTAM's soft-min, PPS's
  temperature 0.005) stay in float32.
* Batch norm (`bn`, RN50 only; ViTs have none): `frozen` (default) keeps CLIP's running statistics (BN layers stay
  in eval mode; their affine weights still train). Batch statistics of one 5-way episode are a poor estimate,
  would make a video's features depend on the rest of its episode (and on how episodes are split over GPUs), and
  would be updated twice under activation checkpointing. `train` uses batch statistics of each forward pass.
* Activation checkpointing (`grad_checkpointing`): per transformer block (open_clip's own) or per ResNet bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mdmf.pipeline.core.errors import MdmfError, dataclass_from_dict
from mdmf.pipeline.core.limits import COUNT, NONNEGATIVE, NONNEGATIVE_REAL, RATE, check_ranges
from mdmf.pipeline.features.frames import AUGMENTS, SOURCES, encode_videos, loader
from mdmf.pipeline.features.recipe import frame_source, load_store_backbone, preprocessor_of, split_videos
from mdmf.pipeline.features.store import SplitFeatures
from mdmf.pipeline.runs import RunDir, save_run_visual
from mdmf.pipeline.train.frame_sources import EpisodeFrames
from mdmf.pipeline.train.inputs import EpisodeInput
from mdmf.visual_encoder import VisualEncoder

AMP_MODES = ("auto", "bf16", "fp16", "off")
BN_MODES = ("frozen", "train")


# The allowed values of E2EConfig's numeric settings (`mdmf.pipeline.core.limits`).
E2E_RANGES = {"backbone_lr": RATE, "backbone_weight_decay": NONNEGATIVE_REAL, "workers": NONNEGATIVE,
              "val_batch_videos": COUNT, "frames": COUNT}


@dataclass
class E2EConfig:
    root: str | None = None  # folder of the videos (None: the one the store was extracted from)
    frames_from: str = "auto"  # auto (the frame store if the store has one) | decode | store
    augment: str = "views"  # views: the store's train views | fresh: a new draw per (episode, video), decode only
    backbone_lr: float = 1e-5
    backbone_weight_decay: float = 0.0
    amp: str = "auto"  # auto: bf16 on CUDA (fp16 + grad scaler without bf16), off on CPU
    grad_checkpointing: bool = False
    bn: str = "frozen"  # frozen: CLIP's running statistics (eval-mode BN) | train: batch statistics
    workers: int = 4  # frame-loading processes per training process
    val_batch_videos: int = 32  # videos per encoder pass when encoding the val split
    # what the user asked for; checked against the store before training (None: whatever the store has)
    backbone: str | None = None
    weights: str | None = None
    frames: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a choice or a numeric setting out of its range (`E2E_RANGES`) in one line, before any work."""
        check_ranges(self, E2E_RANGES)
        for name, allowed in (("frames_from", SOURCES), ("augment", AUGMENTS), ("amp", AMP_MODES), ("bn", BN_MODES)):
            if getattr(self, name) not in allowed:
                raise MdmfError(f"e2e setting {name}={getattr(self, name)!r}: use one of {', '.join(allowed)}")

    @classmethod
    def from_dict(cls, data: dict) -> "E2EConfig":
        return dataclass_from_dict(cls, data, "e2e")


def resolve_amp(amp: str, device: torch.device) -> str:
    if amp == "auto":
        if device.type != "cuda":
            return "off"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp != "off" and device.type != "cuda":
        raise MdmfError(f"--amp {amp}: mixed precision is for CUDA devices; use --amp off on {device.type}")
    return amp


class FrameInput(EpisodeInput):
    """E2E stage: an episode's frames are decoded (or read from the frame store) in worker processes, and the visual
    encoder, trained with the heads, turns them into features (`mdmf.pipeline.train.inputs.EpisodeInput`)."""

    def __init__(self, cfg, store, ctx):
        e = cfg.e2e
        self.cfg, self.store, self.ctx = cfg, store, ctx
        backbone, self.ecfg = load_store_backbone(store, e, ctx.device)
        self.base_spec, self.base_sha = backbone.spec, backbone.weights_sha256
        self.amp = resolve_amp(e.amp, ctx.device)
        self.pre = preprocessor_of(store, self.ecfg)
        try:
            self.encoder = VisualEncoder(backbone.model.visual, self.pre, self.amp, e.grad_checkpointing, e.bn)
        except ValueError as err:  # no activation checkpointing for this encoder: a user error
            raise MdmfError(str(err)) from None
        validates = cfg.val == "val"  # --val none: no val split is read
        self.train, self.val = store.load("train"), store.load("val") if validates else None
        root = e.root
        self.train_videos = split_videos(store, "train", self.train, root, self.ecfg)
        self.val_videos = split_videos(store, "val", self.val, root, self.ecfg) if validates else None
        self.source, _ = frame_source(store, self.ecfg, self.pre, e.frames_from, e.augment, cfg.seed,
                                      [v for v in (self.train_videos, self.val_videos) if v])
        self.views = store.views("train")

    @property
    def uses_scaler(self) -> bool:
        return self.amp == "fp16"

    def param_groups(self) -> list[dict]:
        e = self.cfg.e2e
        return [{"params": [p for p in self.encoder.parameters() if p.requires_grad], "lr": e.backbone_lr,
                 "weight_decay": e.backbone_weight_decay}]

    def chunks(self, sampler, firsts: list[int], count: int):
        return loader(EpisodeFrames(self.source, self.train_videos, sampler, firsts, count), self.cfg.e2e.workers,
                      pin=self.ctx.device.type == "cuda")

    def val_split(self, ctx):
        """The val split with features from the current encoder; the videos are shared out over the processes."""
        n = len(self.val_videos.video_ids)
        mine = np.array_split(np.arange(n), ctx.world)[ctx.rank].tolist()
        part = encode_videos(self.encoder, self.source, self.val_videos, mine, ctx.device,
                             self.cfg.e2e.val_batch_videos, self.cfg.e2e.workers)
        parts = [p for p in ctx.gather(part) if p.size]
        feats = np.concatenate(parts)[:, None]  # (V, 1, T, D)
        v = self.val
        return SplitFeatures(feats, v.labels, v.video_ids, v.class_names, v.prompts, v.prompt_embeddings,
                             v.frame_indices, v.rows)

    def state_dict(self) -> dict:
        return {"visual": self.encoder.visual.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.encoder.visual.load_state_dict(state["visual"])

    def save_best(self, run: RunDir, step: int) -> None:
        save_run_visual(run, self.encoder.visual.state_dict(), step, self.base_spec, self.base_sha, self.ecfg)
