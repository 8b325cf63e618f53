"""Multi-modal Fusion Encoder (MMFE, paper eqs. 5–7): fuses the prompt, the raw frames and a temporal context."""

from __future__ import annotations

import torch
from torch import nn

from mdmf.layers import PositionEmbedding, build_block


class MultiModalFusionEncoder(nn.Module):
    """Cross-transformer over `T + 1` tokens.

    Queries `[prompt; context frames] + pos`, keys/values `[prompt; raw frames] + pos` (one shared learned position
    embedding, eq. 7), then `depth` blocks (`block`, see `mdmf.layers`): the first cross-attends those keys/values;
    later ones self-attend on their input with the `reference` block (as the authors' code) and cross-attend the
    same keys/values again with `pre-ln`. With `self_attention=True` (the NTC ablation: no temporal context) the
    tokens `[prompt; raw frames] + pos` attend to themselves.
    Output `(B, T + 1, D)`; token 0 is the fused prompt, tokens 1..T the frames.
    """

    def __init__(self, dim: int, frames: int, heads: int = 8, depth: int = 1, mlp_dim: int = 2048,
                 attn_dropout: float = 0.2, position_embedding: bool = True, self_attention: bool = False,
                 block: str = "reference", ff_dropout: float = 0.05):
        super().__init__()
        self.self_attention = self_attention
        self.position = PositionEmbedding(frames + 1, dim) if position_embedding else nn.Identity()
        # Which blocks attend to the memory (the raw frames); the others attend to their own input.
        self.cross = [not self_attention and (i == 0 or block == "pre-ln") for i in range(depth)]
        self.blocks = nn.ModuleList(build_block(block, dim, heads, mlp_dim, attn_dropout, ff_dropout, cross)
                                    for cross in self.cross)

    def forward(self, prompt: torch.Tensor, frames: torch.Tensor, context: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """prompt `(B, D)`, frames `(B, T, D)`, context `(B, T, D)` (None for self-attention) -> `(B, T+1, D)`.

        `return_attention=True` also returns every block's attention weights, `(B, depth, heads, T+1, T+1)`:
        entry `[b, i, h, q, k]` is how much output token q (0 the prompt, 1..T the frames) attends to key token k
        in block i, head h (keys: 0 the prompt, 1..T the raw frames in a cross-attending block; the block's own
        input tokens otherwise). The output tokens are the same either way.
        """
        if self.self_attention != (context is None):
            raise ValueError("MMFE: cross-attention needs a temporal context; self-attention (NTC) takes none")
        visual = self.position(torch.cat([prompt[:, None], frames], dim=1))  # (B, T+1, D)
        if self.self_attention:
            x, memory = visual, None
        else:
            x, memory = self.position(torch.cat([prompt[:, None], context], dim=1)), visual
        maps = []
        for block, cross in zip(self.blocks, self.cross):
            kv = memory if cross else None
            if return_attention:
                x, weights = block(x, kv, return_attention=True)
                maps.append(weights)
            else:
                x = block(x, kv)
        return (x, torch.stack(maps, dim=1)) if return_attention else x
