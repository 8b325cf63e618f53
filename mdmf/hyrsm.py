"""HyRSM (Wang et al., CVPR 2022) and HyRSM++ as the CLIP-FSAR codebase computes them (`CNN_HyRSM_1shot` /
`_5shot`, `CNN_HyRSM_plusplus_1shot` / `_5shot`; docs HEADS.md, "hyrsm").

* Intra-relation (per video, `encode`): sinusoidal positions `x·√(D/a) + b·pe`, a pre-LayerNorm self-attention over
  the T frames with a residual, ReLU: `f (B, T, D)`.
* Inter-relation (per episode, `score`): for each query, the set of the episode's support items (class prototypes,
  or every support video with `hyrsm_shots=videos`) and that query, each item the mean of its `f` over frames,
  goes through a post-LayerNorm multi-head self-attention, ReLU: `r (S+1, D)` per query. Every frame becomes
  `W [f_t; r] + c` (the authors' 1×1 convolution over the concatenation, `layer2`).
* Set matching (Bi-MHM): with `d = 1 - cos` between support and query frames, `Σ_i min_j d_ij + Σ_j min_i d_ij`
  (sums in the code; means with `hyrsm_set_reduction=mean`); logits are minus the distance, averaged over a class's
  videos in the `videos` form.
* Training adds the frame classifier's cross-entropy over the `train_classes` training classes on `f` (weight
  `hyrsm_class_weight`; no classifier when `train_classes` is 0: `mdmf train` sets it from the store), and for
  HyRSM++ the temporal coherence regulariser on the final frames (weight
  `hyrsm_temporal_weight`).

Because `layer2` is linear, its frame half `W_f f_t + c` is computed in `encode` (once per video) and only
`W_r r` per episode: a video's tokens are `[f; W_f f + c]`, `(B, 2T, D)`. The parameter names and shapes are the
authors' (`pe.pe`, `temporal_atte_before`, `temporal_atte`, `layer2.0`, `classification_layer`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mdmf.base import EncodedTokens, FewShotMethod, Scores, episode_cross_entropy
from mdmf.config import ModelConfig

# The authors' positional table has 20 rows (it is a buffer of their checkpoints); more frames need more.
POSITION_ROWS = 20


def sinusoid_table(rows: int, dim: int) -> torch.Tensor:
    """`(1, rows, dim)`: the authors' table, `sin(pos / 10000^(2i/D))` at even i and `cos(pos / 10000^(2(i+1)/D))`
    at i + 1 (their exponent, not the usual `2⌊i/2⌋/D`), computed in float64, kept in float32 as theirs is."""
    pos = torch.arange(rows, dtype=torch.float64)[:, None]
    even = torch.arange(0, dim, 2, dtype=torch.float64)
    table = torch.zeros(rows, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos / 10000 ** (2 * even / dim))
    table[:, 1::2] = torch.cos(pos / 10000 ** (2 * (even + 1) / dim))
    return table[None].float()


class ScaledPositions(nn.Module):
    """`x (B, T, D) -> Dropout(x·√(D/a) + b·pe[:T])`."""

    def __init__(self, dim: int, frames: int, a: float, b: float, dropout: float):
        super().__init__()
        self.scale, self.b = math.sqrt(dim / a), b
        self.register_buffer("pe", sinusoid_table(max(POSITION_ROWS, frames), dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x * self.scale + self.b * self.pe[:, : x.shape[1]])


class _SelfAttention(nn.Module):
    """Multi-head self-attention `(B, T, D) -> (B, T, D)`: one bias-free q/k/v projection, scale (D/heads)^-0.5,
    then `Dropout(Linear(D, D))`."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, T, D) -> (B, h, T, D/h)  # noqa: E731
        q, k, v = map(split, self.to_qkv(x).chunk(3, dim=-1))
        attn = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).flatten(-2))


class IntraRelation(nn.Module):
    """`x -> x + Attention(LayerNorm(x))` over a video's frames (the authors' `PreNormattention`)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = _SelfAttention(dim, heads, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


class InterRelation(nn.Module):
    """Post-LayerNorm multi-head self-attention over sets of videos, one set per query: the S support items and the
    query. `LayerNorm(Dropout(fc(softmax(QKᵀ/√d_k)·V)) + x)` with bias-free Q, K, V (the authors'
    `MultiHeadAttention`, with their initialisation). The projections of the supports are computed once for all
    the queries of an episode."""

    def __init__(self, dim: int, heads: int, attn_dropout: float, dropout: float):
        super().__init__()
        self.heads, d_k = heads, dim // heads
        self.w_qs, self.w_ks, self.w_vs = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        for w in (self.w_qs, self.w_ks, self.w_vs):
            nn.init.normal_(w.weight, mean=0.0, std=math.sqrt(2.0 / (dim + d_k)))
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.layer_norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.fc.weight)
        self.dropout = nn.Dropout(dropout)

    def forward(self, items: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """items `(E, S, D)`, queries `(E, M, D)` -> `(E, M, S+1, D)`: query m's set `[items; query m]`, attended."""
        E, S, D = items.shape
        M = queries.shape[1]

        def per_set(w: nn.Linear) -> torch.Tensor:  # (E, M, S+1, heads, d_k)
            a, b = w(items).unflatten(-1, (self.heads, -1)), w(queries).unflatten(-1, (self.heads, -1))
            return torch.cat([a[:, None].expand(E, M, *a.shape[1:]), b[:, :, None]], dim=2)

        q, k, v = per_set(self.w_qs), per_set(self.w_ks), per_set(self.w_vs)
        attn = torch.einsum("emihd,emjhd->emhij", q, k) / math.sqrt(q.shape[-1])
        out = torch.einsum("emhij,emjhd->emihd", self.attn_dropout(attn.softmax(-1)), v).flatten(-2)
        residual = torch.cat([items[:, None].expand(E, M, S, D), queries[:, :, None]], dim=2)
        return self.layer_norm(self.dropout(self.fc(out)) + residual)


def temporal_coherence_targets(frames: int, window: int, balance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """HyRSM++'s `(T, T)` targets and window mask: inside the window (|i-j| ≤ w) the weight `1/((i-j)²+1)` of the
    frame distance; outside, the margin `1 - exp(-(|i-j|-w)²/balance)` the distance should reach."""
    gap = (torch.arange(frames)[:, None] - torch.arange(frames)[None, :]).abs().double()
    inside = gap <= window
    # float32 as the authors' table: the exponential is taken in float32 (theirs is of a float32 tensor)
    margin = 1.0 - torch.exp((-((gap - window) ** 2) / balance).float())
    targets = torch.where(inside, (1.0 / (gap**2 + 1.0)).float(), margin)
    return targets, inside.float()


class HyRSM(EncodedTokens, FewShotMethod):
    """Hybrid relation module and set matching. Single view "hyrsm", tokens `(B, 2T, D)`: the intra-relation output
    `f`, then `layer2`'s frame half of it. No prompts. See the module docstring and docs HEADS.md."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c, dim = config, config.dim
        self.pe = ScaledPositions(dim, c.frames, c.hyrsm_position_a, c.hyrsm_position_b, c.hyrsm_position_dropout)
        self.temporal_atte_before = IntraRelation(dim, c.hyrsm_heads, c.hyrsm_intra_dropout)
        self.temporal_atte = InterRelation(dim, c.hyrsm_heads, c.hyrsm_inter_attn_dropout, c.hyrsm_inter_dropout)
        self.layer2 = nn.Sequential(nn.Conv1d(2 * dim, dim, kernel_size=1))
        self.classification_layer = (nn.Linear(dim, c.train_classes)
                                     if c.train_classes > 0 and c.hyrsm_class_weight > 0 else None)
        targets, inside = temporal_coherence_targets(c.frames, c.hyrsm_temporal_window, c.hyrsm_temporal_balance)
        self.register_buffer("temporal_targets", targets, persistent=False)
        self.register_buffer("temporal_inside", inside, persistent=False)

    @property
    def scores_shots(self) -> bool:
        """The `videos` form compares every support video; the `prototype` form only the class means."""
        return self.config.hyrsm_shots == "videos"

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames `(B, T, D)` -> `{"hyrsm": (B, 2T, D)}`: `f = ReLU(intra(positions(x)))`, then `W_f f + c`."""
        self.check_frames(frames)
        f = F.relu(self.temporal_atte_before(self.pe(frames)))
        conv = self.layer2[0]
        frame_half = f @ conv.weight[:, : self.config.dim, 0].T + conv.bias
        return {"hyrsm": torch.cat([f, frame_half], dim=1)}

    def frame_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The intra-relation output `f (…, T, D)`."""
        return tokens[..., : self.config.frames, :]

    def score(self, query_tokens: dict[str, torch.Tensor], support_tokens: dict[str, torch.Tensor]) -> Scores:
        """query_tokens `{"hyrsm": (E, M, 2T, D)}`, support_tokens `(E, N, K, 2T, D)` -> `Scores` (in training with
        the frame classifier's logits and the temporal regulariser in `extras`)."""
        support = support_tokens["hyrsm"]
        if not self.scores_shots:
            scores = self.score_prototypes(query_tokens, self.prototypes(support_tokens))
        else:  # every support video is an item of the inter-relation; a class's distances are averaged
            E, N, K = support.shape[:3]
            distance, final = self._match(query_tokens["hyrsm"], support.flatten(1, 2))
            distance = distance.unflatten(-1, (N, K)).mean(-1)
            scores = Scores(logits=-distance, distances={"hyrsm": distance},
                            extras={"final": final} if self.training else None)
        if not self.training:
            return scores
        extras = scores.extras
        final = extras.pop("final")
        if final is not None:  # HyRSM++
            extras["temporal"] = self._temporal_coherence(*final)
        if self.classification_layer is not None:
            T = self.config.frames
            extras["support_class"] = self.classification_layer(support[..., :T, :])  # (E, N, K, T, C)
            extras["query_class"] = self.classification_layer(query_tokens["hyrsm"][..., :T, :])  # (E, M, T, C)
        return scores

    def score_prototypes(self, query_tokens: dict[str, torch.Tensor],
                         prototypes: dict[str, torch.Tensor]) -> Scores:
        """The class prototypes `(E, N, 2T, D)` (the mean of a class's shots) as the inter-relation's items."""
        distance, final = self._match(query_tokens["hyrsm"], prototypes["hyrsm"])
        # the final frames are kept for the training losses only (`score` turns them into `extras`)
        return Scores(logits=-distance, distances={"hyrsm": distance},
                      extras={"final": final} if self.training else None)

    def score_classes(self, query_tokens: dict[str, torch.Tensor], encoded: list[dict[str, torch.Tensor]],
                      class_prompts: torch.Tensor) -> Scores:
        """Uneven shots in the `videos` form (`predict`): all N classes' videos are the inter-relation's items at once
        (a class's score depends on the other classes' videos), each class's distances averaged over its K_n."""
        tokens = [self.fuse(enc, None, "support")["hyrsm"] for enc in encoded]  # (K_n, 2T, D) each
        distance, _ = self._match(query_tokens["hyrsm"], torch.cat(tokens)[None])  # (1, M, ΣK_n)
        distance = torch.stack([d.mean(-1) for d in distance.split([len(t) for t in tokens], -1)], -1)
        return Scores(logits=-distance, distances={"hyrsm": distance})

    def _match(self, query: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """query `(E, M, 2T, D)`, items `(E, S, 2T, D)` -> (Bi-MHM distances `(E, M, S)`, the final frames of the
        items per query `(E, M, S, T, D)` and of the queries `(E, M, T, D)`, for HyRSM++'s regulariser in training;
        else None).

        An item's final frame is `a_t + c` (its frame half and the relation half of the query's set), so its cosine
        with a normalised query frame q̂ is `(a_t·q̂ + c·q̂) / ‖a_t + c‖`, `‖a_t + c‖² = ‖a_t‖² + 2 a_t·c + ‖c‖²`:
        the `(E, M, S, T, D)` per-query item frames are never formed.
        """
        T, D, S = self.config.frames, self.config.dim, items.shape[1]
        relation = F.relu(self.temporal_atte(items[..., :T, :].mean(2), query[..., :T, :].mean(2)))  # (E,M,S+1,D)
        relation = relation @ self.layer2[0].weight[:, D:, 0].T  # the relation half of layer2
        frames, rel = items[..., T:, :], relation[:, :, :S]  # (E, S, T, D), (E, M, S, D)
        q_final = query[..., T:, :] + relation[:, :, S, None, :]  # (E, M, T, D)
        q_hat = F.normalize(q_final, dim=-1)
        dots = (torch.einsum("estd,emjd->emstj", frames, q_hat)
                + torch.einsum("emsd,emjd->emsj", rel, q_hat)[..., None, :])  # (E, M, S, T_item, T_query)
        norm2 = (frames.pow(2).sum(-1)[:, None] + 2 * torch.einsum("estd,emsd->emst", frames, rel)
                 + rel.pow(2).sum(-1)[..., None])  # (E, M, S, T)
        cost = 1 - dots / norm2.clamp_min(0).sqrt().clamp_min(1e-12)[..., None]  # (E, M, S, T_item, T_query)
        reduce = torch.sum if self.config.hyrsm_set_reduction == "sum" else torch.mean
        distance = reduce(cost.min(-1).values, -1) + reduce(cost.min(-2).values, -1)  # (E, M, S)
        if not (self.training and self.config.hyrsm_temporal_weight > 0):
            return distance, None
        return distance, (frames[:, None] + rel[..., None, :], q_final)

    def _temporal_coherence(self, s_final: torch.Tensor, q_final: torch.Tensor) -> torch.Tensor:
        """HyRSM++'s regulariser on the final frames: inside the window the weighted frame distances, outside a
        hinge towards the margin (times `hyrsm_temporal_coefficient`); mean over supports, plus over queries."""
        def term(x: torch.Tensor) -> torch.Tensor:
            x = F.normalize(x, dim=-1)
            d = 1 - x @ x.transpose(-1, -2)  # (…, T, T)
            targets, inside = self.temporal_targets.to(d.dtype), self.temporal_inside.to(d.dtype)
            hinge = self.config.hyrsm_temporal_coefficient * (1 - inside) * F.relu(targets - d)
            return (d * inside * targets + hinge).mean()

        return term(s_final) + term(q_final)

    def auxiliary_losses(self, scores: Scores, query_labels: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        c, extras = self.config, scores.extras
        if extras is None:  # evaluation: no auxiliary terms
            return {}
        losses = {}
        if "temporal" in extras:
            losses["temporal"] = (c.hyrsm_temporal_weight, extras["temporal"])
        if self.classification_layer is not None:  # train_classes > 0 and hyrsm_class_weight > 0
            if scores.episode_classes is None:
                raise ValueError(f"hyrsm with hyrsm_class_weight={c.hyrsm_class_weight} needs the episodes' training "
                                 "classes: call forward(..., class_texts=ClassTexts(embeddings, episode_classes)), "
                                 "or set hyrsm_class_weight=0")
            losses["frame_class"] = (c.hyrsm_class_weight, self._frame_class_loss(scores, query_labels))
        return losses

    def _frame_class_loss(self, scores: Scores, query_labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every frame of every episode video over the training classes (the authors' USE_LOCAL)."""
        support, query = scores.extras["support_class"], scores.extras["query_class"]
        E, N, K, T, C = support.shape
        classes = scores.episode_classes  # (E, N)
        support_targets = classes[:, :, None, None].expand(E, N, K, T).reshape(E, -1)
        query_targets = torch.gather(classes, 1, query_labels)[..., None].expand(-1, -1, T).reshape(E, -1)
        logits = torch.cat([support.reshape(E, -1, C), query.reshape(E, -1, C)], dim=1)
        return episode_cross_entropy(logits, torch.cat([support_targets, query_targets], 1), self.config.ce_reduction)
