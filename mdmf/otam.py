"""OTAM: ordered temporal alignment distance between frame sequences (docs METHOD §5), batched and differentiable.

The recurrence is the one the CLIP-FSAR / CLIP-MDMF reference code computes, so distances are comparable with theirs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Added to the product of norms in the frame cosine, as the reference code does (it also guards zero vectors).
COSINE_EPS = 0.01


def frame_cost(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Frame-to-frame cost `1 - x·y / (‖x‖·‖y‖ + 0.01)` for every (query, support) pair.

    query `(..., Q, T, D)`, support `(..., C, S, D)` (leading dims broadcast) -> `(..., Q, C, T, S)`.
    """
    dots = torch.einsum("...qtd,...csd->...qcts", query, support)
    norms = query.norm(dim=-1)[..., :, None, :, None] * support.norm(dim=-1)[..., None, :, None, :]
    return 1.0 - dots / (norms + COSINE_EPS)


def otam_cost(cost: torch.Tensor, smoothing: float = 0.5) -> torch.Tensor:
    """One-direction OTAM on a cost tensor: `(..., T, S)` (rows: query time, columns: support time) -> `(...)`.

    The cost gets a zero column on each side of the support axis (`P`, `T × (S+2)`), then
    row 0: `C[0, m] = Σ_{j≤m} P[0, j]`; rows l ≥ 1: `C[l, 0] = 0`,
    `C[l, m] = P[l, m] + smin(C[l-1, m-1], C[l, m-1])` for 2 ≤ m ≤ S, and the two boundary columns also take the
    cell above: `C[l, 1] = P[l, 1] + smin(C[l-1, 0], C[l-1, 1], C[l, 0])`,
    `C[l, S+1] = P[l, S+1] + smin(C[l-1, S], C[l-1, S+1], C[l, S])`, with `smin(x…) = -λ log Σ exp(-x/λ)`.
    The distance is `C[T-1, S+1]`.

    Each row is computed at once: in `y = exp(-C/λ)` the row recurrence is linear,
    `y_m = g_m (h_m + y_{m-1})` with `g_m = exp(-P[l, m]/λ)`, `h_m` the terms from row l-1 and `y_0 = 1`, so
    `log y_m = G_m + logcumsumexp_j(z_j)` with `G_m = Σ_{i≤m} log g_i`, `z_0 = 0`, `z_j = log h_j - G_{j-1}`.
    Only the loop over the T rows remains; everything else is batched.
    """
    lam = float(smoothing)
    if lam <= 0:
        raise ValueError(f"OTAM smoothing must be positive; got {smoothing}")
    width = cost.shape[-1]  # S
    padded = F.pad(cost, (1, 1))  # (..., T, S+2)
    row = padded[..., 0, :].cumsum(-1)  # (..., S+2): the first row is a plain running sum
    zero = row.new_zeros(row.shape[:-1] + (1,))
    for l in range(1, cost.shape[-2]):
        prev = -row / lam  # log y of row l-1, (..., S+2)
        log_h = torch.cat([
            torch.logaddexp(prev[..., 0:1], prev[..., 1:2]),  # m = 1: diagonal C[l-1,0] and above C[l-1,1]
            prev[..., 1:width],  # 2 ≤ m ≤ S: diagonal C[l-1, m-1] only
            torch.logaddexp(prev[..., width:width + 1], prev[..., width + 1:]),  # m = S+1: diagonal and above
        ], dim=-1)  # (..., S+1) for m = 1 … S+1
        log_g = -padded[..., l, 1:] / lam  # (..., S+1)
        cum_g = log_g.cumsum(-1)  # G_m
        z = torch.cat([zero, log_h - torch.cat([zero, cum_g[..., :-1]], dim=-1)], dim=-1)  # z_0 … z_{S+1}
        log_y = cum_g + torch.logcumsumexp(z, dim=-1)[..., 1:]
        row = torch.cat([zero, -lam * log_y], dim=-1)  # C[l, 0] stays 0
    return row[..., width + 1]


def otam_distance(query: torch.Tensor, support: torch.Tensor, smoothing: float = 0.5,
                  bidirectional: bool = True) -> torch.Tensor:
    """OTAM distance between every query and every support sequence.

    query `(..., Q, T, D)`, support `(..., C, S, D)` (leading dims broadcast, usually T = S) -> `(..., Q, C)`.
    Frame cost `M = 1 - cos` (with 0.01 added to the norm product), soft-min smoothing `λ = smoothing`;
    `bidirectional` returns `OTAM(M) + OTAM(Mᵀ)`. Differentiable; no Python loop over pairs.

    Example:
        >>> q = torch.randn(2, 5, 8, 512)   # 2 episodes, 5 queries, 8 frames
        >>> u = torch.randn(2, 5, 8, 512)   # 2 episodes, 5 class prototypes
        >>> otam_distance(q, u).shape
        torch.Size([2, 5, 5])
    """
    cost = frame_cost(query, support)  # (..., Q, C, T, S)
    distance = otam_cost(cost, smoothing)
    if bidirectional:
        distance = distance + otam_cost(cost.transpose(-1, -2), smoothing)
    return distance
