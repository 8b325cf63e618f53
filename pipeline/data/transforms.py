"""Frame preprocessing: resize, crop S×S, optional horizontal flip, then pixel normalisation.

S, the mean and the std come from the loaded open_clip model, never from constants. One crop window and one flip
decision hold for all T frames of a view, so the motion inside the crop stays coherent. Two choices, each an
`ExtractConfig` field recorded in the store identity:

* `crop` (`FramePreprocessor.crop_mode`):
  - `tsn` (default): shorter side to round(S·256/224) with the model's interpolation (bicubic for CLIP), long side
    rounded; the crop window at `round(u·(size - S))` for the view's fractions u (centre: u = 0.5); flip where the
    dataset allows it (not on SSv2, whose classes name directions).
  - `reference`: the authors' `setup_transforms` (video_reader.py, their videotransforms package): Resize(256) on the
    shorter side (256 = round(S·256/224), i.e. 256 scaled by S/224 for other image sizes), the long side
    `int(256·long/short)` (truncated), no resize when the short side is already 256, PIL bilinear (their `Resize`
    maps its default 'nearest' to `PIL.Image.BILINEAR`; here torch bilinear with antialias, PIL's filter, equal up
    to uint8 rounding); then at train RandomHorizontalFlip (p = 0.5, on every dataset, SSv2 too) and RandomCrop(S)
    with integer offsets uniform on `0..H-S` and `0..W-S`; at test CenterCrop(S) at `int(round((W-S)/2))`
    (Python's round: halves to even). They flip before cropping, we crop then flip: the same distribution of views.
* `normalize` (`FramePreprocessor.normalization`): `clip` (default) = the model's mean/std; `none` = pixels in
  [0, 1] (uint8 / 255), what the authors feed CLIP (torchvision `ToTensor`, no `Normalize`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CROPS = ("tsn", "reference")
NORMALIZATIONS = ("clip", "none")


@dataclass(frozen=True)
class ViewAugment:
    """Where to crop and whether to flip, for one view. `crop_y`/`crop_x` in [0, 1] (0.5 = centre).

    `drawn`: a train view's random draw. The `reference` crop maps its fractions u to uniform integer offsets
    `floor(u·(size - S + 1))`, and takes the authors' centre crop for the eval view (`drawn=False`)."""

    crop_y: float = 0.5
    crop_x: float = 0.5
    flip: bool = False
    drawn: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator, allow_flip: bool) -> "ViewAugment":
        y, x = rng.random(2)
        flip = bool(rng.random() < 0.5) if allow_flip else False
        return cls(float(y), float(x), flip, True)


@dataclass(frozen=True)
class FramePreprocessor:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_ratio: float = 256 / 224
    interpolation: str = "bicubic"
    crop_mode: str = "tsn"  # CROPS: tsn | reference (the authors' Resize(256) / RandomCrop / CenterCrop)
    normalization: str = "clip"  # NORMALIZATIONS: clip (the model's mean/std) | none (pixels in [0, 1])

    def __post_init__(self) -> None:
        if self.crop_mode not in CROPS:
            raise ValueError(f"crop {self.crop_mode!r}: use one of {', '.join(CROPS)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalize {self.normalization!r}: use one of {', '.join(NORMALIZATIONS)}")

    @property
    def resize_to(self) -> int:
        return int(round(self.image_size * self.resize_ratio))

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """The `(height, width)` a `h × w` frame is resized to before cropping."""
        if self.crop_mode == "reference":
            size = self.resize_to
            if min(h, w) == size:
                return h, w
            return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
        scale = self.resize_to / min(h, w)
        return max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale))

    def window(self, h: int, w: int, augment: "ViewAugment") -> tuple[int, int]:
        """`(top, left)` of the S×S crop in a frame already resized to `h × w`."""
        my, mx = h - self.image_size, w - self.image_size
        if self.crop_mode == "reference":
            if augment.drawn:  # RandomCrop: uniform integer offsets 0..m
                return min(my, int(augment.crop_y * (my + 1))), min(mx, int(augment.crop_x * (mx + 1)))
            return int(round(my / 2.0)), int(round(mx / 2.0))  # CenterCrop
        return int(round(augment.crop_y * my)), int(round(augment.crop_x * mx))

    def crop(self, frames: np.ndarray, augment: ViewAugment = ViewAugment()) -> torch.Tensor:
        """`(T, H, W, 3)` uint8 → `(T, 3, S, S)` uint8: resize the shorter side, crop, flip (see the module doc).

        The result stays uint8 so that decode workers send 4× fewer bytes, and so that `--save-frames` stores exactly
        what the encoder saw.
        """
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W), 0..255
        h, w = x.shape[-2:]
        new_h, new_w = self.resized_size(h, w)
        if (new_h, new_w) != (h, w):
            mode = "bilinear" if self.crop_mode == "reference" else self.interpolation
            x = F.interpolate(x, size=(new_h, new_w), mode=mode, align_corners=False, antialias=True)
        top, left = self.window(new_h, new_w, augment)
        x = x[:, :, top : top + self.image_size, left : left + self.image_size]
        if augment.flip:
            x = x.flip(-1)
        return x.round_().clamp_(0, 255).to(torch.uint8)

    def normalize(self, crops: torch.Tensor) -> torch.Tensor:
        """`(..., 3, S, S)` uint8 → float32: in the model's mean/std (`clip`), or in [0, 1] (`none`)."""
        x = crops.float().div_(255.0)
        if self.normalization == "none":
            return x
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x - mean) / std

    def __call__(self, frames: np.ndarray, augment: ViewAugment = ViewAugment()) -> torch.Tensor:
        """`(T, H, W, 3)` uint8 → `(T, 3, S, S)` float32, cropped and normalised."""
        return self.normalize(self.crop(frames, augment))
