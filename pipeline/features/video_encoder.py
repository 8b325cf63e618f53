"""Encode loose video files exactly as extraction encodes val/test videos, for `mdmf predict` and friends.

The recipe (`mdmf.pipeline.features.recipe.EncodeRecipe`: backbone, weights, T, resize ratio, frame sampling, crop,
normalisation, prompt template) comes from a feature store, so that new videos land in the same feature space as the videos a run was trained on: the store's
eval-view indices (`frame_indices` without a generator: TSN segment centres, or the reference `linspace(1, n-2, T)`),
centre crop without flip (`ViewAugment()`), the store's normalisation (`FramePreprocessor`: model mean/std or none),
the same CLIP image embedding, rounded through float16 as the store keeps it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.splits import prompt_for
from mdmf.pipeline.data.views import FAILED, decode_views
from mdmf.pipeline.features.backbones import Backbone, load_backbone, resolve_backbone
from mdmf.pipeline.features.recipe import EncodeRecipe, check_weights, frame_preprocessor


class VideoEncoder:
    """A loaded backbone plus the val/test preprocessing of a recipe."""

    def __init__(self, recipe: EncodeRecipe, device: str | torch.device = "cpu", batch_frames: int = 256,
                 backbone: Backbone | None = None):
        self.recipe, self.device, self.batch_frames = recipe, torch.device(device), batch_frames
        self.backbone = backbone or load_backbone(resolve_backbone(recipe.backbone, recipe.weights), device=self.device)
        check_weights(self.backbone, recipe.weights_sha256,
                      f"the {recipe.backbone} weights {self.backbone.spec.weights}", "the ones the run's feature store was made with", "pass --weights PATH to the same weights file")
        b = self.backbone
        self.pre = frame_preprocessor(recipe, b.image_size, b.mean, b.std, b.interpolation)

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
