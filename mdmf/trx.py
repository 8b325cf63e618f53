"""TRX (Perrett et al., CVPR 2021) as the CLIP-FSAR codebase's `CNN_TRX` computes it (docs/HEADS.md).

For each tuple cardinality ω (`trx_cardinalities`, the code's `temp_set` [2, 3]) a temporal cross-transformer:
frames `(T, D)` + a sinusoidal position encoding scaled by 0.1 (then dropout `trx_dropout`); every ordered ω-tuple
of frames (all `T choose ω` of them, P in all) concatenated to `(ω·D)`; keys `LayerNorm(W_k ·)`, values `W_v ·`
(width `trx_dim`, the code's 1152). A query tuple attends, with one softmax, over all P tuples of all K support
videos of a class (scale `trx_dim^-½`); the class's query-specific prototype is that attention over the support
values; the distance is `‖query values − prototype‖² / P` over all P query tuples. Logits: minus the distances,
averaged over the cardinalities.

Episode-independent (computed once per video by the evaluator): the position encoding, the tuples, keys and values
(`fuse`). Per episode (`score`): the attention of each query tuple over a class's support tuples and the distances;
it needs every shot's keys and values (`scores_shots`), not their class mean.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
from torch import nn

from mdmf.base import FewShotMethod, Scores
from mdmf.config import ModelConfig

# The code's position encodings are scaled by 0.1 (`pe_scale_factor`) and precomputed for 1.5 × T positions.
POSITION_SCALE = 0.1


class SinusoidalPositions(nn.Module):
    """`x + 0.1 · PE`, then dropout: PE[t, 2i] = sin(t / 10000^(2i/D)), PE[t, 2i+1] = cos(…) (D even); x `(B, T, D)`."""

    def __init__(self, frames: int, dim: int, dropout: float):
        super().__init__()
        length = int(frames * 1.5)
        # In float32, as the code builds its table (a model moved to float64 gets exactly the code's values).
        position = torch.arange(length)[:, None]
        rate = torch.exp(torch.arange(0, dim, 2) * -(math.log(10000.0) / dim))
        pe = torch.zeros(length, dim)
        pe[:, 0::2] = torch.sin(position * rate) * POSITION_SCALE
        pe[:, 1::2] = torch.cos(position * rate) * POSITION_SCALE
        self.register_buffer("pe", pe, persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.shape[1]])


class TemporalCrossTransformer(nn.Module):
    """One cardinality ω: `embed` makes a video's tuple keys and values, `distances` compares them."""

    def __init__(self, frames: int, dim: int, size: int, out_dim: int, dropout: float):
        super().__init__()
        self.pe = SinusoidalPositions(frames, dim, dropout)
        self.k_linear = nn.Linear(dim * size, out_dim)
        self.v_linear = nn.Linear(dim * size, out_dim)
        self.norm_k = nn.LayerNorm(out_dim)
        self.register_buffer("tuples", torch.tensor(list(combinations(range(frames), size))), persistent=False)

    def embed(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames `(B, T, D)` -> (keys, values), each `(B, P, out_dim)`, P = `T choose ω`."""
        tuples = self.pe(frames)[:, self.tuples].flatten(-2)  # (B, P, ω·D)
        return self.norm_k(self.k_linear(tuples)), self.v_linear(tuples)

    @staticmethod
    def distances(q_keys: torch.Tensor, q_values: torch.Tensor, s_keys: torch.Tensor,
                  s_values: torch.Tensor) -> torch.Tensor:
        """query keys/values `(E, M, P, d)`, support keys/values `(E, N, K, P, d)` -> `(E, M, N)`: the squared
        distance of the query's values to its query-specific prototype of each class, over P."""
        E, M, P, d = q_keys.shape
        N = s_keys.shape[1]
        # Rows: the M·P query tuples; columns: a class's K·P support tuples.
        qk, qv = q_keys.reshape(E, 1, M * P, d), q_values.reshape(E, 1, M * P, d)
        sk, sv = s_keys.reshape(E, N, -1, d), s_values.reshape(E, N, -1, d)
        attention = torch.softmax(qk @ sk.transpose(-1, -2) / math.sqrt(d), dim=-1)  # (E, N, M·P, K·P)
        # ‖v − A·S‖² = ‖v‖² − 2 A·(S v) + A (S Sᵀ) Aᵀ, per query tuple: the (E, M, N, P, d) prototypes are never
        # formed (at D = 1024, 5-way 5-query, 16 episodes they would be 0.5 GB, and as much again in backward).
        cross = (attention * (qv @ sv.transpose(-1, -2))).sum(-1)  # (E, N, M·P)
        proto_sq = ((attention @ (sv @ sv.transpose(-1, -2))) * attention).sum(-1)
        per_tuple = qv.square().sum(-1) - 2 * cross + proto_sq  # (E, N, M·P)
        return per_tuple.reshape(E, N, M, P).sum(-1).transpose(1, 2) / P


class TRX(FewShotMethod):
    """TRX on frame features; views `k<ω>` and `v<ω>` per cardinality, tokens `(B, P, trx_dim)`. No prompts."""

    fuses = False  # its tokens are tuple projections, not frame features fused with a prompt
    scores_shots = True

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.transformers = nn.ModuleList(TemporalCrossTransformer(c.frames, c.dim, size, c.trx_dim, c.trx_dropout)
                                          for size in c.trx_cardinalities)

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_frames(frames)
        return {"frames": frames}

    def tuple_tokens(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames `(B, T, D)` -> `k<ω>`, `v<ω>` -> `(B, P_ω, trx_dim)` for every cardinality ω."""
        out = {}
        for size, transformer in zip(self.config.trx_cardinalities, self.transformers):
            out[f"k{size}"], out[f"v{size}"] = transformer.embed(frames)
        return out

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        """The per-video keys and values (prompts are not used)."""
        self.check_role(role)
        return self.tuple_tokens(encoded["frames"])

    def trx_distances(self, query_tokens: dict[str, torch.Tensor],
                      support_tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`trx<ω>` -> `(E, M, N)` distances, from query tokens `(E, M, P, d)` and support tokens `(E, N, K, P, d)`."""
        return {f"trx{w}": TemporalCrossTransformer.distances(query_tokens[f"k{w}"], query_tokens[f"v{w}"],
                                                               support_tokens[f"k{w}"], support_tokens[f"v{w}"])
                for w in self.config.trx_cardinalities}

    def score(self, query_tokens: dict[str, torch.Tensor], support_tokens: dict[str, torch.Tensor]) -> Scores:
        """Logits: minus the distances, averaged over the cardinalities."""
        distances = self.trx_distances(query_tokens, support_tokens)
        return Scores(logits=-torch.stack(list(distances.values())).mean(0), distances=distances)

    def score_prototypes(self, query_tokens: dict[str, torch.Tensor],
                         prototypes: dict[str, torch.Tensor]) -> Scores:
        raise ValueError(f"{self.config.name} attends over every support shot: call score, not score_prototypes")
