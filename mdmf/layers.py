"""Small layers shared by the models: the two transformer blocks, a learned position embedding, and the cosine.

Both blocks take `x (B, L, D)` and optional `memory (B, L', D)` and return `(B, L, D)`; `build_block` picks one by
the config's `block` name, so the MMFE and CLIP-FSAR never depend on which.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """`a (..., M, D)`, `b (..., N, D)` (leading dims broadcast) -> `(..., M, N)` of `a·b / (‖a‖·‖b‖ + eps)`.

    eps = 0.01 is the reference code's cosine (as in OTAM); eps = 0 the exact cosine (zero vectors give 0).
    """
    if eps == 0:
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)
    norms = a.norm(dim=-1)[..., :, None] * b.norm(dim=-1)[..., None, :]
    return (a @ b.transpose(-1, -2)) / (norms + eps)


class ReferenceBlock(nn.Module):
    """The authors' block (the only definition the paper's MMFE has):
    `x = Dropout(W_o · MHA(LN(q), LN(k), LN(v))) + q` with one LayerNorm shared by q, k and v, bias-free q/k/v
    projections, `heads` heads of D/heads and scale (D/heads)^-0.5, softmax without dropout; then
    `x = FF(x) + x` with no LayerNorm before the FF, `FF = Linear(D, mlp) → GELU → Dropout → Linear(mlp, D) → Dropout`,
    and no final LayerNorm. `memory` None: self-attention (q = k = v = x).
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, attn_dropout: float, ff_dropout: float):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(attn_dropout))
        self.ff = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(ff_dropout), nn.Linear(mlp_dim, dim),
                                nn.Dropout(ff_dropout))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x `(B, L, D)`, memory `(B, L', D)` or None -> `(B, L, D)`; with `return_attention` also the attention
        weights `(B, heads, L, L')` (rows sum to 1)."""
        q = self.norm(x)
        kv = q if memory is None else self.norm(memory)
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, L, D) -> (B, heads, L, D/heads)
        q, k, v = split(self.to_q(q)), split(self.to_k(kv)), split(self.to_v(kv))
        if return_attention:
            weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)  # (B, heads, L, L')
            attended = weights @ v
        else:  # the same arithmetic in one fused kernel (its default scale is head_dim^-0.5)
            weights, attended = None, F.scaled_dot_product_attention(q, k, v)
        x = self.to_out(attended.transpose(1, 2).flatten(-2)) + x
        x = self.ff(x) + x
        return (x, weights) if return_attention else x


class PreLNBlock(nn.Module):
    """Standard pre-LayerNorm block: `x + Attn(LN(x), LN(kv))`, then `x + MLP(LN(x))`, MLP `D -> mlp_dim -> D` (GELU),
    with `nn.MultiheadAttention` (q/k/v biases, dropout on the attention weights). The block mdmf used before the
    reference block became the default (`block=pre-ln`); its layout is unchanged so older checkpoints load.

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


def build_block(kind: str, dim: int, heads: int, mlp_dim: int, attn_dropout: float, ff_dropout: float,
                cross: bool) -> nn.Module:
    """A block by the config's `block` name: `reference` (`ReferenceBlock`, takes memory or not per call) or `pre-ln`
    (`PreLNBlock`, which has a LayerNorm for the memory only when `cross`; `ff_dropout` is not part of it)."""
    if kind == "reference":
        return ReferenceBlock(dim, heads, mlp_dim, attn_dropout, ff_dropout)
    if kind == "pre-ln":
        return PreLNBlock(dim, heads, mlp_dim, attn_dropout, cross=cross)
    raise ValueError(f"transformer block must be 'reference' or 'pre-ln'; got {kind!r}")


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
