"""How a store was made and how to reproduce it: the one description, used by extraction, e2e training, the
evaluation of e2e runs and `predict`.

* `ExtractConfig`: everything `mdmf extract` is told (its `identity()` decides the stored numbers); a store's own is
  `ExtractConfig.from_store` (`extract_config_of`).
* `EncodeRecipe`: the part of it that turns a loose video and a class name into features like the store's
  val/test videos (`mdmf.pipeline.features.video_encoder`).
* `frame_preprocessor`: the one builder of stage one's crop and normalisation; `check_weights`: the one check that
  loaded weights are those a store was made with (their sha256).
* The backbone a store was made with (`load_store_backbone`), its videos' files (`split_videos`) and a source of
  their frames (`frame_source`: decoded, or the frame store).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.limits import COUNT, NONNEGATIVE, Range, check_preset_ranges, check_ranges
from mdmf.pipeline.core.paths import local_path
from mdmf.pipeline.core.presets import load_preset
from mdmf.pipeline.data.datasets import default_backbone, default_store_path, load_dataset
from mdmf.pipeline.data.decode import reader_identity
from mdmf.pipeline.data.sampling import FRAME_SAMPLINGS
from mdmf.pipeline.data.splits import resolve_video
from mdmf.pipeline.data.transforms import CROPS, NORMALIZATIONS, FramePreprocessor
from mdmf.pipeline.features.backbones import (BACKBONE_ALIASES, Backbone, base_name, load_backbone, register_tiny,
                                              resolve_backbone, run_backbone)
from mdmf.pipeline.features.frames import DecodedFrames, FrameSource, SplitVideos, StoredFrames
from mdmf.pipeline.features.store import FeatureStore, StoreMeta

# Extraction settings that older stores' configs lack; their identity holds them (with `IDENTITY_DEFAULTS`).
STORE_DEFAULTED = ("frame_sampling", "normalize", "crop")


def frame_preprocessor(settings, image_size: int, mean, std, interpolation: str) -> FramePreprocessor:
    """Stage one's crop and normalisation: `settings` (an `ExtractConfig` or `EncodeRecipe`: its `resize_ratio`,
    `crop`, `normalize`) for a model with these constants (a `Backbone`'s, or those a store recorded)."""
    return FramePreprocessor(int(image_size), tuple(mean), tuple(std), settings.resize_ratio, interpolation,
                             crop_mode=settings.crop, normalization=settings.normalize)


def check_weights(backbone: Backbone, sha256: str | None, asked: str, made_with: str, fix: str,
                  source: str | None = None) -> None:
    """The one weights check: `backbone`'s weights must have the `sha256` a store recorded (None: nothing to check).
    The error reads "`asked` (sha256 …) are not `made_with` (sha256 …[, `source`]); `fix`"."""
    if sha256 and backbone.weights_sha256 != sha256:
        where = f", {source}" if source else ""
        raise MdmfError(f"{asked} (sha256 {backbone.weights_sha256[:12]}…) are not {made_with} (sha256 "
                        f"{sha256[:12]}…{where}); {fix}")


SAMPLING_DESCRIPTIONS = {  # the identity's readable "sampling" entry (the tsn one is what older stores hold)
    "tsn": "tsn: random frame per segment (train), segment centre (val/test)",
    "reference": "reference: linspace(start, end, T) with start, end jittered (train), linspace(1, n-2, T) (val/test)",
}


# The allowed values of ExtractConfig's numeric settings (`mdmf.pipeline.core.limits`). resize_ratio: the short side
# is resized to S·ratio before the S×S crop, so at least S.
EXTRACT_RANGES = {"frames": COUNT, "train_views": COUNT, "seed": NONNEGATIVE, "resize_ratio": Range(1, real=True),
                  "chunk_videos": COUNT, "workers": NONNEGATIVE, "batch_frames": COUNT}


@dataclass
class ExtractConfig:
    """Everything `mdmf extract` is told. The `identity()` part decides the stored numbers and is checked on resume."""

    dataset: str
    root: str
    splits_dir: str | None = None  # None: the shipped splits/<dataset> (toy: <root>/splits)
    out: str | None = None  # None: cache/<dataset>/<backbone>
    backbone: str | None = None  # None: tiny for toy, RN50 otherwise
    weights: str | None = None  # None: the backbone's default (openai; the shipped file for tiny)
    frames: int = 8
    train_views: int = 2
    seed: int = 0
    prompt_template: str = "a photo of {}"
    resize_ratio: float = 256 / 224
    # Stage one's frames, the paper's by default; `reference`/`none`/`reference` are the authors' released code (see
    # pipeline/data/sampling.py and pipeline/data/transforms.py for the exact formulas). Stores made before these fields existed
    # were made with the defaults (`store.IDENTITY_DEFAULTS`).
    frame_sampling: str = "tsn"  # tsn: TSN segments (paper) | reference: the authors' jittered linspace
    normalize: str = "clip"  # clip: the model's mean/std (paper) | none: pixels in [0, 1], as the authors feed CLIP
    crop: str = "tsn"  # tsn: round(S·256/224), crop S, flip where allowed | reference: the authors' Resize(256) etc.
    chunk_videos: int = 16
    save_frames: bool = False
    splits: tuple[str, ...] | None = None  # None: every split the dataset has (of train, val, test)
    # runtime only: these do not change the stored numbers
    workers: int = 2
    batch_frames: int = 256
    device: str = "auto"
    shard: tuple[int, int] = (0, 1)
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a choice or a numeric setting out of its range (`EXTRACT_RANGES`) in one line, before any file."""
        check_ranges(self, EXTRACT_RANGES)
        for name, allowed in (("frame_sampling", FRAME_SAMPLINGS), ("normalize", NORMALIZATIONS), ("crop", CROPS)):
            if getattr(self, name) not in allowed:
                raise MdmfError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: use one of {', '.join(allowed)}")

    def allow_flip(self, dataset_flip: bool) -> bool:
        """Whether train views may flip: where the dataset allows it, and always with the authors' crop (they flip on
        SSv2 too)."""
        return bool(dataset_flip) or self.crop == "reference"

    def preprocessor(self, image_size: int, mean, std, interpolation: str) -> FramePreprocessor:
        """Stage one's crop and normalisation for a model with these constants (`frame_preprocessor`)."""
        return frame_preprocessor(self, image_size, mean, std, interpolation)

    @classmethod
    def from_store(cls, store) -> "ExtractConfig":
        """The `ExtractConfig` a store was made with (runtime settings at their defaults). Settings its config does
        not record (a store made before they existed) are read from its identity, which has their defaults."""
        data = dict(store.meta.config)
        data["splits"] = tuple(data.get("splits", ()))
        for name in STORE_DEFAULTED:
            data.setdefault(name, store.meta.identity[name])
        return cls(**data)

    def resolved_backbone(self) -> str:
        return self.backbone or run_backbone(self.weights) or default_backbone(self.dataset)

    def store_path(self) -> Path:
        backbone = self.resolved_backbone()
        name = Path(backbone).stem if backbone.endswith(".json") else backbone
        if run_backbone(self.weights):  # fine-tuned weights: never the store of the weights it started from
            name = f"{name}-{Path(self.weights).resolve().name}"
        return local_path(self.out, "--out") if self.out else default_store_path(self.dataset, name)

    def identity(self, backbone: Backbone, flip: bool) -> dict:
        return {
            "dataset": self.dataset,
            **{k: v for k, v in backbone.describe().items() if k != "weights"},
            "frames": self.frames,
            "train_views": self.train_views,
            "seed": self.seed,
            "prompt_template": self.prompt_template,
            "resize_ratio": self.resize_ratio,
            "flip": flip,
            "sampling": SAMPLING_DESCRIPTIONS[self.frame_sampling],
            "frame_sampling": self.frame_sampling,
            "normalize": self.normalize,
            "crop": self.crop,
            "save_frames": self.save_frames,
            **reader_identity(),  # which frames come out of a file: the reader and the decoder's version
        }


def extract_config(preset: str | None = None, **given) -> ExtractConfig:
    """The `ExtractConfig` of a command line: the preset's `extract` section first (`mdmf.pipeline.core.presets.load_preset`),
    then the options given (None = not given), then the dataclass defaults."""
    values = {}
    if preset:
        values = dict(load_preset(preset).extract)
        known = {f.name for f in fields(ExtractConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MdmfError(f"--preset {preset}: unknown extract settings {unknown}; the extract section takes "
                            f"{', '.join(sorted(known))}")
        check_preset_ranges(preset, "extract", values, EXTRACT_RANGES)
        for name in ("splits", "shard"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
    values.update({k: v for k, v in given.items() if v is not None})
    values.setdefault("root", None)
    return ExtractConfig(**values)


def extract_config_of(store: FeatureStore) -> ExtractConfig:
    """The `ExtractConfig` a store was made with (`ExtractConfig.from_store`)."""
    return ExtractConfig.from_store(store)


@dataclass(frozen=True)
class EncodeRecipe:
    """How videos and class names become features. `weights_sha256`: when set, the loaded weights must match it."""

    backbone: str
    weights: str | None = None  # None: the backbone's default weights
    frames: int = 8
    resize_ratio: float = 256 / 224
    prompt_template: str = "a photo of {}"
    weights_sha256: str | None = None
    frame_sampling: str = "tsn"  # the store's `ExtractConfig` choices (pipeline/data/sampling.py, transforms.py)
    crop: str = "tsn"
    normalize: str = "clip"

    @classmethod
    def from_store(cls, store, weights: str | None = None, config_file: str | None = None) -> "EncodeRecipe":
        """The recipe a store was extracted with. `weights` replaces the recorded weights location (the file may have
        moved; the hash must still match); `config_file` is the open_clip model config `.json` of a store made with
        `--backbone FILE.json` (the store records only the model name)."""
        meta = StoreMeta.of(store.meta)
        backbone = meta.backbone
        if "open_clip_model" not in backbone:
            raise MdmfError(f"{store.path}: this store records no CLIP backbone ({backbone.get('backbone')!r}), so new "
                            "videos cannot be encoded like its videos; use a store made by `mdmf extract`")
        name = backbone["backbone"]
        if config_file:
            if Path(config_file).stem != name:
                raise MdmfError(f"--backbone {config_file}: the run's store was made with backbone {name!r}; give "
                                f"that model's config file ({name}.json)")
            name = config_file
        elif not _known_model(name):
            raise MdmfError(f"the run's store was made with backbone {name!r} from a model config file; pass "
                            f"--backbone PATH/{name}.json")
        made = meta.identity
        return cls(backbone=name, weights=weights or backbone["weights"], frames=meta.frames,
                   resize_ratio=float(made["resize_ratio"]), prompt_template=made["prompt_template"],
                   weights_sha256=backbone.get("weights_sha256"), frame_sampling=made["frame_sampling"],
                   crop=made["crop"], normalize=made["normalize"])


def _known_model(name: str) -> bool:
    import open_clip  # here, not at the top: importing it costs every CLI start 2.5 s (torchvision, timm, hf hub)

    register_tiny()
    return BACKBONE_ALIASES.get(name, name) in open_clip.list_models()


# ---- the backbone and the frames of a store ----------------------------------------------------------------------

def load_store_backbone(store: FeatureStore, asked, device: torch.device) -> tuple[Backbone, ExtractConfig]:
    """The backbone the store's features were made with, after checking it against what the user `asked` for (an
    object with `backbone`, `weights`, `frames`, each None when not given: `E2EConfig`)."""
    meta, ecfg = store.meta, extract_config_of(store)
    made_with = meta.backbone
    if asked.frames is not None and asked.frames != meta.frames:
        raise MdmfError(f"--frames {asked.frames}: the store {store.path} holds T={meta.frames} frames per video; "
                        f"extract a store with --frames {asked.frames} (into a new --out) or leave --frames out")
    if asked.backbone is not None and base_name(asked.backbone) != base_name(made_with["backbone"]):
        raise MdmfError(f"--backbone {asked.backbone}: the store {store.path} was extracted with "
                        f"{made_with['backbone']}; extract one with --backbone {asked.backbone}, or give its --cache")
    weights = asked.weights if asked.weights is not None else ecfg.weights
    backbone = load_backbone(resolve_backbone(ecfg.resolved_backbone(), weights), device=device)
    check_weights(backbone, made_with["weights_sha256"],
                  f"--weights {asked.weights}" if asked.weights is not None else f"the weights {made_with['weights']}",
                  f"the weights the store {store.path} was extracted with",
                  "extract a store with these weights (new --out), or leave --weights out", made_with["weights"])
    return backbone, ecfg


def preprocessor_of(store: FeatureStore, ecfg: ExtractConfig) -> FramePreprocessor:
    """Stage one's crop and normalisation for `store` (its backbone's constants, its `crop`/`normalize` settings)."""
    b = store.meta.backbone
    return ecfg.preprocessor(b["image_size"], b["mean"], b["std"], b["interpolation"])


def split_videos(store: FeatureStore, split: str, data, root: str | None, ecfg: ExtractConfig) -> SplitVideos:
    """The usable videos of `split` (as `data = store.load(split)` orders them) and their files.

    With `root`, files are looked up again under it (the videos moved since extraction)."""
    paths = store.strings(split, "paths")
    paths = [paths[r] for r in data.rows]
    if root:
        dataset = load_dataset(ecfg.dataset, root, ecfg.splits_dir, progress=False)
        by_id = {e.video_id: e for e in dataset.entries[split]}
        paths = [str(resolve_video(root, by_id[v], dataset.info) or "") for v in data.video_ids]
    return SplitVideos(split, list(data.video_ids), paths, np.asarray(data.rows), np.asarray(data.labels))


def frame_source(store: FeatureStore, ecfg: ExtractConfig, pre: FramePreprocessor, frames_from: str,
                 augment: str = "views", train_seed: int = 0,
                 videos: list[SplitVideos] = ()) -> tuple[FrameSource, str]:
    """The frame source for a store and which it is (`store` or `decode`): its frame store, or decoding (checked:
    the files are there)."""
    has_frames = all("frames" in store.group(v.split) for v in videos) if videos else False
    if frames_from == "auto":
        frames_from = "store" if has_frames and augment == "views" else "decode"
    if frames_from == "store":
        if augment != "views":
            raise MdmfError("--augment fresh draws new crops from the videos: use it with --frames-from decode")
        if not has_frames:
            raise MdmfError(f"{store.path} has no frame store: extract it with --save-frames, or use --frames-from decode")
        return StoredFrames(str(store.path)), "store"
    for v in videos:
        missing = [v.video_ids[i] for i, p in enumerate(v.paths) if not p or not Path(p).is_file()]
        if missing:
            raise MdmfError(f"{len(missing)} {v.split} videos are not where the store says (e.g. {missing[0]}); "
                            "give the videos' folder with --root, or train from the frame store (--save-frames)")
    return DecodedFrames(store.meta.frames, pre, int(ecfg.seed), store.meta.flip, augment, train_seed,
                         sampling=ecfg.frame_sampling), "decode"
