"""Small layers shared by the models: a pre-LayerNorm transformer block and a learned position embedding."""

from __future__ import annotations

import torch
from torch import nn


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: `x + Attn(LN(x), LN(kv))`, then `x + MLP(LN(x))` with MLP `D -> mlp_dim -> D` (GELU).

    `cross=True`: keys/values come from `memory` (with their own LayerNorm); `cross=False`: self-attention on `x`.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, attn_dropout: float, cross: bool = False):
        super().__init__()
        self.cross = cross
        self.norm_query = nn.LayerNorm(dim)
        # Only cross-attention normalises a second token set; self-attention would leave this LayerNorm unused.
        self.norm_memory = nn.LayerNorm(dim) if cross else None
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x `(B, L, D)`, memory `(B, L', D)` (cross-attention only) -> `(B, L, D)`.

        `return_attention=True` also returns the attention weights `(B, heads, L, L')` (each row sums to 1; after
        dropout in training mode, as PyTorch returns them). Off by default: asking for them takes a slower kernel.
        """
        if self.cross != (memory is not None):
            raise ValueError("a cross-attention block needs `memory`; a self-attention block takes none")
        q = self.norm_query(x)
        kv = self.norm_memory(memory) if self.cross else q
        attended, weights = self.attn(q, kv, kv, need_weights=return_attention, average_attn_weights=False)
        x = x + attended
        x = x + self.mlp(self.norm_mlp(x))
        return (x, weights) if return_attention else x


class PositionEmbedding(nn.Module):
    """A learned embedding per position, added to tokens `(B, L, D)`: token i gets position i (L ≤ `length`)."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(length, dim) * 0.02)  # small, like ViT position embeddings

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-2] > self.weight.shape[0]:
            raise ValueError(f"position embedding has {self.weight.shape[0]} positions, got {tokens.shape[-2]} tokens;"
                             " the model's `frames` must match the videos")
        return tokens + self.weight[: tokens.shape[-2]]
