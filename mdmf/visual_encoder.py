"""The CLIP visual encoder as a trainable frame encoder (e2e training): uint8 crops in, frame embeddings out.

Pure torch, like the rest of `mdmf`: the crops' normalisation is given (`normalize`, e.g. stage one's
`FramePreprocessor`, whose `normalize` maps `(..., 3, S, S)` uint8 to float32), so this module reads no files.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class Normalizer(Protocol):
    def normalize(self, crops: torch.Tensor) -> torch.Tensor:
        """`(..., 3, S, S)` uint8 -> float32, as the features' store was normalised."""


class VisualEncoder(nn.Module):
    """uint8 crops `(B, T, 3, S, S)` -> frame embeddings `(B, T, D)` float32: stage one's function, trainable.

    Its state dict is the open_clip visual encoder's (`visual.*`), so it loads into `model.visual` as it is.
    `amp`: off, bf16 or fp16 autocast around `visual` (the heads stay float32); `bn`: frozen (CLIP's running
    statistics, eval-mode BN even in training) or train. Raises ValueError when `grad_checkpointing` is asked of a
    visual encoder that has none.
    """

    def __init__(self, visual: nn.Module, pre: Normalizer, amp: str = "off", grad_checkpointing: bool = False,
                 bn: str = "frozen"):
        super().__init__()
        self.visual, self.pre, self.amp, self.bn = visual, pre, amp, bn
        self.checkpointing = grad_checkpointing
        self._resnet = all(hasattr(visual, a) for a in ("stem", "layer1", "layer4", "attnpool"))
        if grad_checkpointing and not self._resnet:
            if not hasattr(visual, "set_grad_checkpointing"):
                raise ValueError(f"activation checkpointing is not available for {type(visual).__name__}; "
                                 "train without --grad-checkpointing")
            visual.set_grad_checkpointing(True)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        B, T = frames.shape[:2]
        x = self.pre.normalize(frames.reshape(B * T, *frames.shape[2:]))  # as stage one: float32, its normalisation
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            y = self._resnet_forward(x) if self._resnet and self.checkpointing and self.training else self.visual(x)
        return y.float().reshape(B, T, -1)

    def _resnet_forward(self, x: torch.Tensor) -> torch.Tensor:
        """open_clip's ModifiedResNet.forward, with each bottleneck block recomputed in the backward pass."""
        v = self.visual
        x = v.stem(x)
        for layer in (v.layer1, v.layer2, v.layer3, v.layer4):
            for block in layer:
                x = checkpoint(block, x, use_reentrant=False)
        return v.attnpool(x)

    def train(self, mode: bool = True) -> "VisualEncoder":
        super().train(mode)
        if mode and self.bn == "frozen":
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
