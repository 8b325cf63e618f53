"""Local Temporal Context Extractor (LTCE, paper eq. 3): each frame sees its neighbours through two 3-wide convs."""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("paper", "reference")


class LocalTemporalContext(nn.Module):
    """`F -> Conv1d -> ReLU -> BN -> Conv1d -> ReLU -> BN` over time (`paper`), or two plain convolutions
    (`reference`: the authors' code has no activation and no BN). `(B, T, D) -> (B, T, D)`.

    BatchNorm in training mode normalises over every video passed in one call: the models encode all videos of an
    episode together, so in training an episode's videos are coupled through these statistics. In eval mode BN uses
    its running statistics and each video's output depends on that video alone.
    """

    def __init__(self, dim: int, kernel: int = 3, variant: str = "paper"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"LTCE variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        layers: list[nn.Module] = []
        for _ in range(2):
            layers.append(nn.Conv1d(dim, dim, kernel, padding=kernel // 2))
            if variant == "paper":
                layers += [nn.ReLU(), nn.BatchNorm1d(dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames.transpose(1, 2)).transpose(1, 2)  # Conv1d wants (B, D, T)
