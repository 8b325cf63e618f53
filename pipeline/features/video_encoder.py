"""Encode loose video files exactly as extraction encodes val/test videos, for `mdmf predict` and friends.

The recipe (backbone, weights, T, resize ratio, frame sampling, crop, normalisation, prompt template) comes from a
feature store, so that new videos land in the same feature space as the videos a run was trained on: the store's
eval-view indices (`frame_indices` without a generator: TSN segment centres, or the reference `linspace(1, n-2, T)`),
centre crop without flip (`ViewAugment()`), the store's normalisation (`FramePreprocessor`: model mean/std or none),
the same CLIP image embedding, rounded through float16 as the store keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.splits import prompt_for
from mdmf.pipeline.data.transforms import FramePreprocessor
from mdmf.pipeline.data.views import FAILED, decode_views
from mdmf.pipeline.features.backbones import BACKBONE_ALIASES, Backbone, load_backbone, register_tiny, resolve_backbone


@dataclass(frozen=True)
class EncodeRecipe:
    """How videos and class names become features. `weights_sha256`: when set, the loaded weights must match it."""

    backbone: str
    weights: str | None = None  # None: the backbone's default weights
    frames: int = 8
    resize_ratio: float = 256 / 224
    prompt_template: str = "a photo of {}"
    weights_sha256: str | None = None
    frame_sampling: str = "tsn"  # the store's `ExtractConfig` choices (pipeline/data/sampling.py, pipeline/data/transforms.py)
    crop: str = "tsn"
    normalize: str = "clip"

    @classmethod
    def from_store(cls, store, weights: str | None = None, config_file: str | None = None) -> "EncodeRecipe":
        """The recipe a store was extracted with. `weights` replaces the recorded weights location (the file may have
        moved; the hash must still match); `config_file` is the open_clip model config `.json` of a store made with
        `--backbone FILE.json` (the store records only the model name)."""
        meta = store.meta
        backbone, identity = meta.get("backbone", {}), meta.get("identity", {})
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
        return cls(backbone=name, weights=weights or backbone["weights"], frames=int(meta["frames"]),
                   resize_ratio=float(identity.get("resize_ratio", 256 / 224)),
                   prompt_template=identity.get("prompt_template", "a photo of {}"),
                   weights_sha256=backbone.get("weights_sha256"),
                   frame_sampling=identity.get("frame_sampling", "tsn"), crop=identity.get("crop", "tsn"),
                   normalize=identity.get("normalize", "clip"))


def _known_model(name: str) -> bool:
    import open_clip

    register_tiny()
    return BACKBONE_ALIASES.get(name, name) in open_clip.list_models()


class VideoEncoder:
    """A loaded backbone plus the val/test preprocessing of a recipe."""

    def __init__(self, recipe: EncodeRecipe, device: str | torch.device = "cpu", batch_frames: int = 256,
                 backbone: Backbone | None = None):
        self.recipe, self.device, self.batch_frames = recipe, torch.device(device), batch_frames
        self.backbone = backbone or load_backbone(resolve_backbone(recipe.backbone, recipe.weights), device=self.device)
        if recipe.weights_sha256 and self.backbone.weights_sha256 != recipe.weights_sha256:
            raise MdmfError(
                f"the {recipe.backbone} weights {self.backbone.spec.weights} (sha256 {self.backbone.weights_sha256[:12]}…) "
                f"are not the ones the run's feature store was made with (sha256 {recipe.weights_sha256[:12]}…); "
                "pass --weights PATH to the same weights file"
            )
        b = self.backbone
        self.pre = FramePreprocessor(b.image_size, b.mean, b.std, recipe.resize_ratio, b.interpolation,
                                     crop_mode=recipe.crop, normalization=recipe.normalize)

    @property
    def dim(self) -> int:
        return self.backbone.dim

    def describe(self) -> dict:
        return {**self.backbone.describe(), "frames": self.recipe.frames, "resize_ratio": self.recipe.resize_ratio,
                "frame_sampling": self.recipe.frame_sampling, "crop": self.recipe.crop,
                "normalize": self.recipe.normalize, "prompt_template": self.recipe.prompt_template}

    def crops(self, path: Path) -> tuple[torch.Tensor, np.ndarray]:
        """One video -> (`(T, 3, S, S)` uint8 centre crops, `(T,)` frame indices); a bad file is an `MdmfError`
        naming it."""
        path = Path(path)
        out = decode_views(str(path), self.recipe.frames, self.pre, [None], allow_flip=False,
                           sampling=self.recipe.frame_sampling)  # no generator: the eval view
        if out["status"] == FAILED:
            raise MdmfError(f"{path}: not a readable video ({out['error']}); remove it or convert it to mp4")
        return out["crops"][0], out["indices"][0].astype(np.int64)

    @torch.no_grad()
    def encode_videos(self, paths: list[Path], advance=lambda n=1, **fields: None) -> torch.Tensor:
        """Video files -> `(V, T, D)` float32 frame embeddings (float16-rounded, as in a store). `advance(1)` is
        called after each decoded video (a progress bar)."""
        crops = []
        for path in paths:
            crops.append(self.crops(path)[0])
            advance(1)
        if not crops:
            return torch.zeros(0, self.recipe.frames, self.dim)
        flat = torch.stack(crops).reshape(-1, *crops[0].shape[-3:])  # (V*T, 3, S, S) uint8
        out = [self.backbone.encode_images(self.pre.normalize(flat[i : i + self.batch_frames]).to(self.device)).float().cpu()
               for i in range(0, flat.shape[0], self.batch_frames)]
        return torch.cat(out).reshape(len(crops), self.recipe.frames, -1).half().float()

    def encode_classes(self, class_names: list[str]) -> tuple[list[str], torch.Tensor]:
        """Class names -> (prompt strings, `(C, D)` float32 text embeddings), readable names in the recipe's template."""
        prompts = [prompt_for(name, self.recipe.prompt_template) for name in class_names]
        return prompts, self.backbone.encode_text(prompts)
