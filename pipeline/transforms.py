"""Frame preprocessing: shorter side to round(S·256/224), crop S×S, optional horizontal flip, model mean/std.

S, the mean and the std come from the loaded open_clip model, never from constants. One crop window and one flip
decision hold for all T frames of a view, so the motion inside the crop stays coherent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ViewAugment:
    """Where to crop and whether to flip, for one view. `crop_y`/`crop_x` in [0, 1] (0.5 = centre)."""

    crop_y: float = 0.5
    crop_x: float = 0.5
    flip: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator, allow_flip: bool) -> "ViewAugment":
        y, x = rng.random(2)
        flip = bool(rng.random() < 0.5) if allow_flip else False
        return cls(float(y), float(x), flip)


@dataclass(frozen=True)
class FramePreprocessor:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_ratio: float = 256 / 224
    interpolation: str = "bicubic"

    @property
    def resize_to(self) -> int:
        return int(round(self.image_size * self.resize_ratio))

    def crop(self, frames: np.ndarray, augment: ViewAugment = ViewAugment()) -> torch.Tensor:
        """`(T, H, W, 3)` uint8 → `(T, 3, S, S)` uint8: resize the shorter side, crop, flip.

        The result stays uint8 so that decode workers send 4× fewer bytes, and so that `--save-frames` stores exactly
        what the encoder saw.
        """
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W), 0..255
        h, w = x.shape[-2:]
        scale = self.resize_to / min(h, w)
        new_h, new_w = max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale))
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode=self.interpolation, align_corners=False, antialias=True)
        top = int(round(augment.crop_y * (new_h - self.image_size)))
        left = int(round(augment.crop_x * (new_w - self.image_size)))
        x = x[:, :, top : top + self.image_size, left : left + self.image_size]
        if augment.flip:
            x = x.flip(-1)
        return x.round_().clamp_(0, 255).to(torch.uint8)

    def normalize(self, crops: torch.Tensor) -> torch.Tensor:
        """`(..., 3, S, S)` uint8 → float32 in the model's mean/std."""
        x = crops.float().div_(255.0)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x - mean) / std

    def __call__(self, frames: np.ndarray, augment: ViewAugment = ViewAugment()) -> torch.Tensor:
        """`(T, H, W, 3)` uint8 → `(T, 3, S, S)` float32, cropped and normalised."""
        return self.normalize(self.crop(frames, augment))
