"""Multi-modal Fusion Encoder (MMFE, paper eqs. 5–7): fuses the prompt, the raw frames and a temporal context."""

from __future__ import annotations

import torch
from torch import nn

from mdmf.layers import PositionEmbedding, TransformerBlock


class MultiModalFusionEncoder(nn.Module):
    """Cross-transformer over `T + 1` tokens.

    Queries `[prompt; context frames] + pos`, keys/values `[prompt; raw frames] + pos` (one shared learned position
    embedding, eq. 7), `depth` pre-LayerNorm blocks attending to the same keys/values. With `self_attention=True`
    (the NTC ablation: no temporal context) the tokens `[prompt; raw frames] + pos` attend to themselves.
    Output `(B, T + 1, D)`; token 0 is the fused prompt, tokens 1..T the frames.
    """

    def __init__(self, dim: int, frames: int, heads: int = 8, depth: int = 1, mlp_dim: int = 2048,
                 attn_dropout: float = 0.2, position_embedding: bool = True, self_attention: bool = False):
        super().__init__()
        self.self_attention = self_attention
        self.position = PositionEmbedding(frames + 1, dim) if position_embedding else nn.Identity()
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim, attn_dropout, cross=not self_attention)
                                    for _ in range(depth))

    def forward(self, prompt: torch.Tensor, frames: torch.Tensor, context: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """prompt `(B, D)`, frames `(B, T, D)`, context `(B, T, D)` (None for self-attention) -> `(B, T+1, D)`.

        `return_attention=True` also returns every block's attention weights, `(B, depth, heads, T+1, T+1)`:
        entry `[b, i, h, q, k]` is how much output token q (0 the prompt, 1..T the frames) attends to key token k
        (0 the prompt, 1..T the raw frames) in block i, head h. The output tokens are the same either way.
        """
        if self.self_attention != (context is None):
            raise ValueError("MMFE: cross-attention needs a temporal context; self-attention (NTC) takes none")
        visual = self.position(torch.cat([prompt[:, None], frames], dim=1))  # (B, T+1, D)
        if self.self_attention:
            x, memory = visual, None
        else:
            x, memory = self.position(torch.cat([prompt[:, None], context], dim=1)), visual
        maps = []
        for block in self.blocks:
            if return_attention:
                x, weights = block(x, memory, return_attention=True)
                maps.append(weights)
            else:
                x = block(x, memory)
        return (x, torch.stack(maps, dim=1)) if return_attention else x
