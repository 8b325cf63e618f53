"""STRM (Thatipelli et al., CVPR 2022) on frame features, as its released code computes it (docs/HEADS.md).

TRX (`mdmf.trx`) on frames enriched by an MLP mixer, plus a query-class distance branch on the frames themselves:
* enrichment (`MLP_Mix_Enrich`): `x = frames + 0.1 · PE` (dropout `strm_dropout`); `x = TokenMLP(x over T) + x`
  (Linear(T, T) → ReLU → Linear(T, T)); `x = ChannelMLP(x) + x` (Linear(D, D) → ReLU → Linear(D, D)); then TRX as
  in `mdmf.trx`, its own position encoding included;
* distance branch (`DistanceLoss`), per cardinality: the frames after dropout `strm_dropout`, every ordered tuple
  concatenated, `ReLU(Linear(ω·D, D/2))`; a query's distance to a class is the mean over its tuples of the Euclidean
  distance to the nearest of all the class's support tuples (all shots);
* logits `TRX logits + w · distance logits`, loss `CE(TRX logits) + w · CE(distance logits)`, w =
  `strm_distance_weight` (0.1), the CE summed over the queries in the code (`ce_reduction=sum`).

The code's patch-level attention (16 max-pooled patches per frame, before the mean over patches) needs spatial maps
that a store of pooled frame features does not hold: here the frames are what that branch would have averaged.
In the released code the distance branch is a plain Python list, so its projection is never trained (nor saved) and
stays at its random initialisation: `strm_learn_distance=false` (the reference) keeps it frozen but saved;
`true` trains it (the paper's description).

Episode-independent (`fuse`, once per video): the enrichment, the tuples, TRX's keys and values, the distance
branch's tuple embeddings. Per episode (`score`): the attention and the nearest-tuple distances.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from mdmf.base import Scores, episode_cross_entropy
from mdmf.config import ModelConfig
from mdmf.trx import TRX, SinusoidalPositions


class FrameEnrichment(nn.Module):
    """STRM's frame-level MLP mixer: frames `(B, T, D)` -> `(B, T, D)`."""

    def __init__(self, frames: int, dim: int, dropout: float):
        super().__init__()
        self.pe = SinusoidalPositions(frames, dim, dropout)
        self.token_mlp = nn.Sequential(nn.Linear(frames, frames), nn.ReLU(), nn.Linear(frames, frames))
        self.channel_mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.pe(frames)
        x = self.token_mlp(x.transpose(1, 2)).transpose(1, 2) + x
        return self.channel_mlp(x) + x


class TupleDistance(nn.Module):
    """STRM's query-class distance for one cardinality ω: `embed` per video, `distances` per episode."""

    def __init__(self, frames: int, dim: int, size: int, dropout: float, learn: bool):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim * size, dim // 2)
        self.proj.requires_grad_(learn)
        self.register_buffer("tuples", torch.tensor(list(combinations(range(frames), size))), persistent=False)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """frames `(B, T, D)` -> `(B, P, D/2)`: ReLU of the projected ordered tuples."""
        return torch.relu(self.proj(self.dropout(frames)[:, self.tuples].flatten(-2)))

    @staticmethod
    def distances(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """query `(E, M, P, h)`, support `(E, N, K, P, h)` -> `(E, M, N)`: the mean over the query's tuples of the
        distance to the nearest support tuple of the class."""
        E, M, P, h = query.shape
        N = support.shape[1]
        nearest = torch.cdist(query.reshape(E, 1, M * P, h), support.reshape(E, N, -1, h)).amin(-1)  # (E, N, M·P)
        return nearest.reshape(E, N, M, P).mean(-1).transpose(1, 2)


class STRM(TRX):
    """TRX on enriched frames (views `k<ω>`, `v<ω>`) + the distance branch (views `d<ω>`, `(B, P, D/2)`)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.enrich = FrameEnrichment(c.frames, c.dim, c.strm_dropout)
        self.distance_branch = nn.ModuleList(TupleDistance(c.frames, c.dim, size, c.strm_dropout,
                                                           c.strm_learn_distance) for size in c.trx_cardinalities)

    def fuse(self, encoded: dict[str, torch.Tensor], prompts: torch.Tensor | None,
             role: str) -> dict[str, torch.Tensor]:
        self.check_role(role)
        frames = encoded["frames"]
        tokens = self.tuple_tokens(self.enrich(frames))
        for size, branch in zip(self.config.trx_cardinalities, self.distance_branch):
            tokens[f"d{size}"] = branch.embed(frames)
        return tokens

    def score(self, query_tokens: dict[str, torch.Tensor], support_tokens: dict[str, torch.Tensor]) -> Scores:
        """distances `trx<ω>` (TRX) and `qc<ω>` (the distance branch); logits `-mean(trx) - w · mean(qc)`."""
        distances = self.trx_distances(query_tokens, support_tokens)
        for w in self.config.trx_cardinalities:
            distances[f"qc{w}"] = TupleDistance.distances(query_tokens[f"d{w}"], support_tokens[f"d{w}"])
        frame, patch = self.branch_logits(distances)
        return Scores(logits=frame + self.config.strm_distance_weight * patch, distances=distances)

    @staticmethod
    def branch_logits(distances: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(TRX logits, distance-branch logits), each minus its distances averaged over the cardinalities."""
        return tuple(-torch.stack([d for k, d in distances.items() if k.startswith(prefix)]).mean(0)
                     for prefix in ("trx", "qc"))

    def loss(self, scores: Scores, query_labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """`CE(TRX logits) + w · CE(distance logits)` (STRM trains the two branches' logits separately and adds them
        only to predict); parts "trx" and "distance", the two terms, and "ce", the cross-entropy of the logits it
        predicts with (not minimised; logged so that heads compare)."""
        frame, patch = self.branch_logits(scores.distances)
        red = self.config.ce_reduction
        trx, distance = (episode_cross_entropy(x, query_labels, red) for x in (frame, patch))
        total = trx + self.config.strm_distance_weight * distance
        ce = episode_cross_entropy(scores.logits, query_labels, red)
        return total, {"ce": float(ce.detach()), "trx": float(trx.detach()), "distance": float(distance.detach())}
