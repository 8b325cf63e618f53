"""Global Temporal Context Extractor (GTCE, paper eq. 4): a causal TCN whose last step has seen the whole video."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class TemporalBlock(nn.Module):
    """TCN residual block: two weight-normed causal dilated convs, each ReLU + dropout; `ReLU(x + block(x))`.

    `(B, D, T) -> (B, D, T)`; output step t depends only on steps ≤ t (left padding).
    """

    def __init__(self, dim: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv1 = weight_norm(nn.Conv1d(dim, dim, kernel, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(dim, dim, kernel, dilation=dilation))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        h = self.dropout(F.relu(self.conv2(F.pad(h, (self.pad, 0)))))
        return F.relu(x + h)


class GlobalTemporalContext(nn.Module):
    """`F_g = repeat(TCN(F)[last step], T) + F`, `(B, T, D) -> (B, T, D)`.

    With kernel 3 and dilations 1, 2, 4 the receptive field of the last step is 29 ≥ T = 8 frames.
    """

    def __init__(self, dim: int, dilations: tuple[int, ...] = (1, 2, 4), kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        self.tcn = nn.Sequential(*(TemporalBlock(dim, kernel, d, dropout) for d in dilations))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        last = self.tcn(frames.transpose(1, 2))[:, :, -1]  # (B, D): the step that has seen every frame
        return frames + last[:, None, :]  # broadcasting over T is the repeat
