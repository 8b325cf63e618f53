"""OTAM: ordered temporal alignment distance between frame sequences (docs METHOD §5), batched and differentiable.

The recurrence is the one the CLIP-FSAR / CLIP-MDMF reference code computes, so distances are comparable with theirs
(`otam_cost` states it). How it is computed here, and why (`benchmarks/otam.py` measures it, BENCHMARKS.md "OTAM"):

* In `a = -C/λ` the soft-min is a log-add-exp, and an interior cell `(l, m)` (2 ≤ m ≤ S) depends only on column
  m-1 (its left and diagonal neighbours). So the columns are scanned, each one at once for all T rows and all pairs:
  S-1 steps of two operations. Column 1 also takes the cell above, `a[l, 1] = p[l, 1] + logaddexp(log 2, a[l-1, 1])`
  (its two other neighbours are the zeros of column 0): T-1 steps of two operations on the pairs. Column S+1 (zero
  cost) unrolls to a closed form, `a[T-1, S+1] = logsumexp_l(a[l, S] + log 2·[l < T-1])`. About 2(T+S) operations
  per call where torch.logaddexp is one kernel (CUDA), against about 8T for the earlier row-at-a-time
  `logcumsumexp` scan and ~T² for a cell loop; on the CPU each log-add-exp is six cheap vectorised operations
  instead (see `COMPOSED_LOGADDEXP_DEVICES`).
* Layout: the work tensors are `(S, T, lanes)` (lanes: pairs, both directions of a square cost side by side), the
  time axes leading, so every step reads and writes contiguous blocks of lanes; slicing a `(pairs, T, S)` tensor at
  one cell would be a strided gather, which costs more than the arithmetic. The cost is brought into that layout,
  and the gradient out of it, with torch's blocked 2-D transpose copy. On the CPU the lanes go through in blocks
  (`CPU_BLOCK_LANES`) with work buffers reused from block to block: they stay in cache, and fresh memory is not
  touched for every call.
* The backward is hand-written, not autograd's graph of the loop: `∂a[T-1, S+1]/∂a[l, m]` (the soft alignment
  through each cell) flows back through the same recurrence, column by column in reverse, weighted by the soft-min's
  softmax weights; with two terms these are sigmoids of the difference of the two neighbours, `σ(a_left - a_diag)`,
  computed for all the cells of a block at once. The gradient of the distance with respect to `cost[l, m]` is
  exactly that occupancy (the λ's cancel). The backward recomputes the forward of each block rather than keeping
  `a` for all pairs.
* Evaluation on the CPU (no gradient wanted) takes another path, `_otam_frames_exp`: in `y = exp(-C/λ)` the
  recurrence is an add and a multiply per cell, with no log-add-exp at all, and the frame cost is computed block
  by block in the layout the scan reads (lanes last), never as one full tensor. It is used where no value can
  underflow (`EXP_DOMAIN_RANGE`: `(2/λ)(T+S)` at most 80 in float32, 700 in float64; λ = 0.5 and T = S = 8 give
  64), and gives the log-domain scan's distances to rounding (1e-10 relative in float64, tested).
"""

from __future__ import annotations

import math
import threading

import torch

# Added to the product of norms in the frame cosine, as the reference code does (it also guards zero vectors).
COSINE_EPS = 0.01


def frame_cost(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Frame-to-frame cost `1 - x·y / (‖x‖·‖y‖ + 0.01)` for every (query, support) pair.

    query `(..., Q, T, D)`, support `(..., C, S, D)` (leading dims broadcast) -> `(..., Q, C, T, S)`, contiguous.
    """
    Q, T, D = query.shape[-3:]
    C, S = support.shape[-3:-1]
    # One batched matmul over the frames of all Q queries and C supports, (..., Q·T, D) @ (..., D, C·S); BLAS takes
    # the transposed operand as it is (einsum was measured slower here: it copies its inputs into a new layout).
    dots = query.reshape(*query.shape[:-3], Q * T, D) @ support.reshape(*support.shape[:-3], C * S, D).transpose(-1, -2)
    dots = dots.unflatten(-1, (C, S)).unflatten(-3, (Q, T)).transpose(-3, -2)  # (..., Q, C, T, S), a view
    # Three full-size passes (the plain formula takes four, and a fresh tensor each): the denominator, its
    # reciprocal in place, and `1 - r·dots` in one addcmul, laid out like r (contiguous).
    r = torch.addcmul(dots.new_tensor(COSINE_EPS), query.norm(dim=-1)[..., :, None, :, None],
                      support.norm(dim=-1)[..., None, :, None, :]).reciprocal_()
    return torch.addcmul(dots.new_tensor(1.0), r, dots, value=-1)


def otam_cost(cost: torch.Tensor, smoothing: float = 0.5) -> torch.Tensor:
    """One-direction OTAM on a cost tensor: `(..., T, S)` (rows: query time, columns: support time) -> `(...)`.

    The reference recurrence (docs METHOD §5): the cost gets a zero column on each side of the support axis
    (`P`, `T × (S+2)`), then
    row 0: `C[0, m] = Σ_{j≤m} P[0, j]`; rows l ≥ 1: `C[l, 0] = 0`,
    `C[l, m] = P[l, m] + smin(C[l-1, m-1], C[l, m-1])` for 2 ≤ m ≤ S, and the two boundary columns also take the
    cell above: `C[l, 1] = P[l, 1] + smin(C[l-1, 0], C[l-1, 1], C[l, 0])`,
    `C[l, S+1] = P[l, S+1] + smin(C[l-1, S], C[l-1, S+1], C[l, S])`, with `smin(x…) = -λ log Σ exp(-x/λ)`.
    The distance is `C[T-1, S+1]`. Differentiable (a hand-written backward, see `_OtamScan`).
    """
    lam = float(smoothing)
    if lam <= 0:
        raise ValueError(f"OTAM smoothing must be positive; got {smoothing}")
    return _OtamScan.apply(cost, lam, (False,))


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
    lam = float(smoothing)
    if lam <= 0:
        raise ValueError(f"OTAM smoothing must be positive; got {smoothing}")
    if _exp_domain_applies(query, support, lam):  # evaluation on the CPU: see `_otam_frames_exp`
        return _otam_frames_exp(query, support, lam, bidirectional)
    cost = frame_cost(query, support)  # (..., Q, C, T, S)
    if not bidirectional:
        return _OtamScan.apply(cost, lam, (False,))
    if cost.shape[-1] == cost.shape[-2]:  # both directions in one scan over twice the pairs: half the operations
        return _OtamScan.apply(cost, lam, (False, True))
    return _OtamScan.apply(cost, lam, (False,)) + _OtamScan.apply(cost, lam, (True,))


# ---- evaluation on the CPU: frames to distances in blocks, in the exp domain --------------------------------------
# Devices on which a call that needs no gradient takes `_otam_frames_exp`. On CUDA the log-domain scan below is kept:
# it launches fewer kernels (two per column), and the launches are what counts there.
EXP_DOMAIN_DEVICES = {"cpu"}
# Largest `(2/λ)·(T + S)` (per dtype of the work) for which the exp domain is used: every cell of `y = exp(-C/λ)`
# then lies in [e^-(2/λ)(T+S), 2^(T+S)], normal numbers (float32 down to e^-87.3, float64 to e^-708), so nothing
# underflows and no rescaling is needed. A frame cost lies in (0, 2), so one cell's `-cost/λ` lies in (-2/λ, 0].
EXP_DOMAIN_RANGE = {torch.float32: 80.0, torch.float64: 700.0}
# Lanes (pairs) of one direction per block: the block's frame cost, its exp and two columns of the scan (about
# 0.6 KB per lane at T = S = 8) stay in cache.
EXP_BLOCK_LANES = 16384


def _exp_domain_applies(query: torch.Tensor, support: torch.Tensor, lam: float) -> bool:
    if query.device.type not in EXP_DOMAIN_DEVICES or support.device != query.device:
        return False
    if torch.is_grad_enabled() and (query.requires_grad or support.requires_grad):
        return False  # training: the log-domain scan with its hand-written backward
    dtype = torch.promote_types(torch.promote_types(query.dtype, support.dtype), torch.float32)
    limit = EXP_DOMAIN_RANGE.get(dtype)
    frames = query.shape[-2] + support.shape[-2]
    empty = query.shape[:-1].numel() == 0 or support.shape[:-1].numel() == 0  # nothing to do: the log path's shapes
    return limit is not None and not empty and 2.001 / lam * frames <= limit


@torch.no_grad()
def _otam_frames_exp(query: torch.Tensor, support: torch.Tensor, lam: float, bidirectional: bool) -> torch.Tensor:
    """`otam_distance` without a gradient, computed from the frames block by block in `y = exp(-C/λ)`.

    There the soft-min recurrence is a sum and a product, `y[l, m] = g[l, m]·(y[l-1, m-1] + y[l, m-1])` with
    `g = exp(-cost/λ)`: two cheap operations per cell instead of a log-add-exp (six, a `log` and a sigmoid among
    them). Column 1 is `y[l, 1] = g[l, 1]·(2 + y[l-1, 1])` (the two zeros of column 0 give e^0 + e^0), and column
    S+1 the closed form `y[T-1, S+1] = 2·Σ_{l<T-1} y[l, S] + y[T-1, S]`. `_exp_domain_applies` keeps every value a
    normal number. The frame cost is computed per block too, laid out `(Q', T, C, S, lanes)` with the lanes last
    (a matrix product per query frame, or one batched product and a blocked transpose), and both directions read
    its exp through strided views: no full-size cost tensor is written, and no transpose of it.
    """
    given = torch.promote_types(query.dtype, support.dtype)  # the result's dtype (half inputs work in float32)
    dtype = torch.promote_types(given, torch.float32)
    (Q, T, D), (C, S) = query.shape[-3:], support.shape[-3:-1]
    batch = _broadcast_shapes(query.shape[:-3], support.shape[:-3])
    query, support = query.to(dtype), support.to(dtype)
    shared = support.shape[:-3].numel() == 1  # one set of supports for every query (lanes: the queries)
    if shared:
        q = query.reshape(-1, T, D)  # (J, T, D): every query of every batch entry
        u = support.reshape(C * S, D)
        nq = q.norm(dim=-1).T.contiguous()[None]  # (1, T, J)
        nu = u.norm(dim=-1).view(C, S, 1)
        inner = 1
    else:  # lanes: the batch entries, each with its own Q queries and C supports (copied block by block)
        q, u = query.expand(*batch, Q, T, D), support.expand(*batch, C, S, D)
        if len(batch) > 1:
            q, u = q.reshape(-1, Q, T, D), u.reshape(-1, C, S, D)
        inner = Q
    lanes = q.shape[0]
    per_block = lanes if query.device.type != "cpu" else max(1, EXP_BLOCK_LANES // (inner * C))
    n_max = min(per_block, lanes)
    k = math.log2(math.e) / lam  # g = exp(-cost/λ) = 2^(k·(x·y/(‖x‖‖y‖+0.01) - 1))
    cells = T * S * inner * C
    x_buf, r_buf = _work_buffer("x", cells * n_max, q), _work_buffer("r", cells * n_max, q)
    # ping-pong columns of the scan, row 0 zero (the missing diagonal neighbour of row 0)
    y_buf = _work_buffer("y", 2 * (max(T, S) + 1) * cells // (T * S) * n_max, q).view(2, -1, inner, C, n_max)
    y_buf[:, 0].zero_()
    out = q.new_empty((inner, C, lanes))
    for start in range(0, lanes, per_block):
        n = min(per_block, lanes - start)
        x = x_buf[: cells * n].view(inner, T, C, S, n)  # x·y, then g, as (Q', T, C, S, lanes)
        if shared:
            for t in range(T):  # (C·S, D) @ (D, n): query frame t of the block's queries, written in place
                torch.mm(u, q[start:start + n, t].T, out=x[0, t].view(C * S, n))
            nq_b, nu_b = nq[..., start:start + n], nu
        else:  # (n, Q·T, D) @ (n, D, C·S), then lanes last with the blocked 2-D transpose copy
            # a block's frames as they are if contiguous; otherwise (a slice of the tokens, as the models pass)
            # copied into buffers kept from call to call: a fresh tensor would fault in new pages on every call,
            # which here costs more than the arithmetic
            qb, ub = q[start:start + n], u[start:start + n]
            if not qb.is_contiguous():
                qb = _work_buffer("q", n * Q * T * D, q).view(n, Q, T, D).copy_(qb)
            if not ub.is_contiguous():
                ub = _work_buffer("u", n * C * S * D, q).view(n, C, S, D).copy_(ub)
            dots = _work_buffer("dots", cells * n, q).view(n, Q * T, C * S)
            torch.bmm(qb.view(n, Q * T, D), ub.view(n, C * S, D).transpose(1, 2), out=dots)
            x.view(-1, n).copy_(dots.view(n, -1).T)
            nq_b = qb.norm(dim=-1).permute(1, 2, 0).contiguous()  # (Q, T, n)
            nu_b = ub.norm(dim=-1).permute(1, 2, 0).contiguous()  # (C, S, n)
        r = r_buf[: cells * n].view(inner, T, C, S, n)
        # r = k / (‖x‖‖y‖ + 0.01), then g = 2^(x·y·r - k) in place
        torch.addcmul(q.new_tensor(COSINE_EPS / k), nq_b[:, :, None, None], nu_b[None, None],
                      value=1 / k, out=r).reciprocal_()
        torch.addcmul(q.new_tensor(-k), x, r, out=x).exp2_()
        total = out[..., start:start + n]
        _exp_scan(x.permute(3, 1, 0, 2, 4), y_buf[..., :n], out=total).log_()  # query time as rows (S, T, Q', C, n)
        if bidirectional:  # support time as rows; the logs are added (the product of the two could underflow)
            total += _exp_scan(x.permute(1, 3, 0, 2, 4), y_buf[..., :n]).log_()
    out = out.mul_(-lam)  # (Q', C, lanes)
    if shared:
        return out[0].T.reshape(*query.shape[:-3], Q, C).expand(*batch, Q, C).to(given)
    return out.permute(2, 0, 1).reshape(*batch, Q, C).to(given)


_WORK = threading.local()
# Work buffers of the exp-domain path are kept per thread up to this many elements each (evaluation calls it on
# chunk after chunk of the same size).
WORK_BUFFER_LIMIT = 1 << 25


def _work_buffer(name: str, numel: int, like: torch.Tensor) -> torch.Tensor:
    """A flat buffer of `numel` elements like `like`, reused from call to call in this thread (contents arbitrary)."""
    buffers = _WORK.__dict__.setdefault("buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
        buf = like.new_empty(numel)
        if numel <= WORK_BUFFER_LIMIT:
            buffers[name] = buf
    return buf[:numel]


def _broadcast_shapes(a: torch.Size, b: torch.Size) -> tuple[int, ...]:
    """torch.broadcast_shapes for two shapes (which takes milliseconds a call in torch 2.14)."""
    a, b = (1,) * (len(b) - len(a)) + tuple(a), (1,) * (len(a) - len(b)) + tuple(b)
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        raise ValueError(f"OTAM: the leading dims of the query {a} and the support {b} do not broadcast")
    return tuple(x if y == 1 else y for x, y in zip(a, b))


def _exp_scan(g: torch.Tensor, y_buf: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """One direction in the exp domain: g `(cols, rows, *lanes)` (a strided view) -> `y[rows-1, cols+1]` `(*lanes)`.

    y_buf `(2, ≥ rows+1, *lanes)`, row 0 of both zero: the previous and the current column, `y[l]` kept as row l+1.
    Returns the sum of the products of the paths; -λ·log of it is the distance."""
    cols, rows = g.shape[:2]
    prev, cur = y_buf[0, : rows + 1], y_buf[1, : rows + 1]
    prev[1].copy_(g[0, 0])  # column 1: y[0, 1] = g[0, 1]; below it the cell above and the two zeros of column 0
    for l in range(1, rows):
        torch.add(prev[l], 2.0, out=prev[l + 1]).mul_(g[0, l])
    for m in range(1, cols):  # y[l, m] = g[l, m]·(y[l-1, m-1] + y[l, m-1]) for all rows at once
        torch.add(prev[:-1], prev[1:], out=cur[1:]).mul_(g[m])
        prev, cur = cur, prev
    # column S+1 (zero cost): y[T-1, S+1] = 2·Σ_{l<T-1} y[l, S] + y[T-1, S]
    total = torch.sum(prev[1:], dim=0, out=out)
    return total.mul_(2).sub_(prev[rows])


# ---- the scan ----------------------------------------------------------------------------------------------------
# Devices on which `_logaddexp` is composed of vectorised operations rather than torch.logaddexp: torch's CPU kernel
# for float32 goes through a scalar log1p (about 12 ns per element on the 2-core benchmark machine, against about
# 1.5 ns for the six operations below). On CUDA torch.logaddexp is one kernel, and the launches are what counts.
COMPOSED_LOGADDEXP_DEVICES = {"cpu"}
# Lanes (pairs × directions) scanned at a time on the CPU: the work buffers of a block (about 0.6 KB per lane at
# T = 8, 20 MB here) are reused from block to block, so they stay in the last-level cache, and a call writes much
# less fresh memory (on the 2-core benchmark machine a first touch of a page costs about 2 ns per float, more than
# the arithmetic). 16,384-65,536 measured about alike there, 262,144 (no blocks) 1.5x slower. Elsewhere: one block.
CPU_BLOCK_LANES = 32768


def _logaddexp(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """`out = log(exp(x) + exp(y))` elementwise (x may be a 0-dim tensor; out, scratch shaped like y, not aliased).

    Composed as `max(x, y) - log σ(|x - y|)`: `σ(|d|)` lies in [1/2, 1], so nothing overflows, and x = -inf gives y.
    """
    if out.device.type not in COMPOSED_LOGADDEXP_DEVICES:
        return torch.logaddexp(x, y, out=out)
    torch.maximum(x, y, out=scratch)
    torch.sub(x, y, out=out).abs_().sigmoid_().log_()
    return torch.sub(scratch, out, out=out)


class _Block:
    """The work buffers of one block of lanes (pairs × directions), allocated once per call and reused."""

    def __init__(self, like: torch.Tensor, cols: int, rows: int, lanes: int, directions: int):
        # one block's cost as (T, S, pairs) of the cost's own orientation: loaded with torch's blocked 2-D transpose
        # copy from `(pairs, T·S)` rows (a strided gather took ~10x longer), and used for the gradient on the way back
        self.stage = like.new_empty(cols * rows * (lanes // directions))
        self.p = like.new_empty((cols, rows, lanes))  # -cost/λ, (S, T, lanes), direction by direction
        # a[l, m] = -C[l, m]/λ for support column m = 1 … S, kept as a[m-1, 1 + l]; row 0 of each column is -inf,
        # the missing diagonal neighbour of query row 0 (whose only neighbour is on its left: a plain sum)
        self.a = like.new_empty((cols, rows + 1, lanes))
        self.a[:, 0] = -math.inf
        self.tmp, self.scratch = like.new_empty((2, rows, lanes))
        self.log2 = like.new_tensor(math.log(2.0))

    def staged(self, shape: tuple[int, int], pairs: int) -> torch.Tensor:
        """The stage as `(T, S, pairs)` of the cost (contiguous)."""
        return self.stage[: shape[0] * shape[1] * pairs].view(*shape, pairs)

    def load(self, cost_ts: torch.Tensor, start: int, lam: float, transposed: tuple[bool, ...]) -> int:
        """p = -cost/λ for pairs [start, start + n) of `cost_ts (T·S, pairs)`, each direction's n lanes side by side.

        Returns the lanes used, `n × directions`."""
        rows_c, cols_c = (self.p.shape[0], self.p.shape[1]) if transposed[0] else (self.p.shape[1], self.p.shape[0])
        n = min(self.p.shape[-1] // len(transposed), cost_ts.shape[-1] - start)
        stage = self.staged((rows_c, cols_c), n)
        stage.view(rows_c * cols_c, n).copy_(cost_ts[:, start:start + n])
        for i, t in enumerate(transposed):  # direction i's (S_i, T_i): the cost's (T, S) if transposed, else (S, T)
            torch.mul(stage if t else stage.transpose(0, 1), -1.0 / lam, out=self.p[..., i * n:(i + 1) * n])
        return n * len(transposed)

    def forward(self, lanes: int) -> torch.Tensor:
        """Fill `a` for the first `lanes` lanes of `p`; returns `a[T-1, S+1]`, `(lanes,)`."""
        p, a, tmp, scratch = self.p[..., :lanes], self.a[..., :lanes], self.tmp[..., :lanes], self.scratch[..., :lanes]
        cols, rows = p.shape[:2]
        # column 1: a[0, 1] = p[0, 1]; below, the cell above and the two zeros of column 0
        a[0, 1] = p[0, 0]
        for l in range(1, rows):
            torch.add(_logaddexp(self.log2, a[0, l], tmp[0], scratch[0]), p[0, l], out=a[0, l + 1])
        # columns 2 … S: all rows at once from the previous column (diagonal a[m-1, l], left a[m-1, l+1])
        for m in range(1, cols):
            torch.add(_logaddexp(a[m - 1, :rows], a[m - 1, 1:], tmp, scratch), p[m], out=a[m, 1:])
        # column S+1 (zero cost): a[l, S+1] = logaddexp(a[l-1, S], a[l-1, S+1], a[l, S]) unrolls to
        # a[T-1, S+1] = logsumexp_l(a[l, S] + log 2 for l < T-1); tmp keeps the summands for the backward
        z = torch.add(a[cols - 1, 1:], math.log(2.0), out=tmp)
        z[-1] = a[cols - 1, rows]
        return torch.logsumexp(z, dim=0)

    def backward(self, lanes: int, total: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """e[m-1, l] = ∂a[T-1, S+1]/∂a[l, m] for the lanes of the last `forward` (`total` its result) -> e."""
        a, z = self.a[..., :lanes], self.tmp[..., :lanes]
        cols, rows = e.shape[:2]
        torch.sub(z, total, out=e[cols - 1]).exp_()  # the softmax of the closed form of column S+1
        # interior cells (l, m), 2 ≤ m ≤ S: x = a_left - a_diag = a[l, m-1] - a[l-1, m-1]; the weight of the left
        # neighbour is σ(x), of the diagonal one σ(-x) (the softmax of two terms); row 0 has no diagonal
        # neighbour (-inf): x = inf, weights 1 and 0
        x = a[:-1, 1:] - a[:-1, :-1]  # (S-1, T, lanes)
        w_left = torch.sigmoid(x)
        w_diag = x[:, 1:].neg_().sigmoid_()  # (S-1, T-1, lanes): of the diagonal neighbour (l, m-1) of (l+1, m)
        for m in range(cols - 1, 0, -1):  # e's column m+1 -> column m (0-based: e[m] is support column m+1)
            torch.mul(w_left[m - 1], e[m], out=e[m - 1])
            e[m - 1, :-1].addcmul_(w_diag[m - 1], e[m, 1:])
        # column 1 also feeds the cell below it: the weight of a[l-1, 1] in a[l, 1] is σ(a[l-1, 1] - log 2)
        w_up = torch.sigmoid(a[0, 1:rows] - math.log(2.0))  # (T-1, lanes)
        for l in range(rows - 1, 0, -1):
            e[0, l - 1].addcmul_(w_up[l - 1], e[0, l])
        return e


class _OtamScan(torch.autograd.Function):
    """OTAM of `cost (..., T, S)` in one or two directions -> `(...)`, the directions' distances summed.

    `transposed` holds one flag per direction (True: the direction of `cost.mT`); all directions must have the same
    shape (two only for a square cost). See the module docstring for the method. The backward recomputes the
    forward block by block instead of keeping `a` for all pairs (on the CPU that is cheaper than writing and
    reading it once more, and it keeps training's memory at the cost tensor's size).
    """

    @staticmethod
    def _blocks(cost: torch.Tensor, transposed: tuple[bool, ...]):
        """(cost as `(T·S, pairs)`, block, lanes per block): block by block on the CPU, all at once elsewhere."""
        rows, cols = cost.shape[-2:]
        # a view (strides (1, T·S)) for a contiguous cost such as frame_cost's; a copy only for other layouts
        cost_ts = cost.movedim((-2, -1), (0, 1)).reshape(rows * cols, -1)
        n = len(transposed)
        lanes = n * cost_ts.shape[-1]
        if cost.device.type == "cpu":
            lanes = min(lanes, max(1, CPU_BLOCK_LANES // n) * n)
        lanes = max(lanes, n)
        if transposed[0]:
            rows, cols = cols, rows  # T, S of the direction(s)
        dtype = torch.promote_types(cost.dtype, torch.float32)  # half inputs are scanned in float32
        return cost_ts, _Block(cost.new_empty((), dtype=dtype), cols, rows, lanes, n), lanes

    @staticmethod
    def forward(ctx, cost: torch.Tensor, lam: float, transposed: tuple[bool, ...]) -> torch.Tensor:
        cost_ts, block, lanes = _OtamScan._blocks(cost, transposed)
        n, pairs = len(transposed), cost_ts.shape[-1]
        out = block.p.new_empty(pairs)
        for start in range(0, pairs, lanes // n):
            used = block.load(cost_ts, start, lam, transposed)
            total = block.forward(used)
            torch.sum(total.view(n, used // n), dim=0, out=out[start:start + used // n])
        ctx.save_for_backward(cost)
        ctx.lam, ctx.transposed = lam, transposed
        return out.mul_(-lam).view(cost.shape[:-2]).to(cost.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (cost,) = ctx.saved_tensors
        cost_ts, block, lanes = _OtamScan._blocks(cost, ctx.transposed)
        n, pairs, (rows_c, cols_c) = len(ctx.transposed), cost_ts.shape[-1], cost.shape[-2:]
        grad = grad.reshape(pairs).to(block.p.dtype)
        e = block.p.new_empty((*block.p.shape[:2], lanes))
        # ∂distance/∂cost[l, m] = e (d = -λ·a and p = -cost/λ: the λ's cancel), written as `(pairs, T·S)` rows,
        # contiguous like frame_cost's result, through the stage and the blocked transpose copy
        result = block.p.new_empty((pairs, rows_c * cols_c))
        for start in range(0, pairs, lanes // n):
            used = block.load(cost_ts, start, ctx.lam, ctx.transposed)
            m = used // n
            block.backward(used, block.forward(used), e[..., :used])
            g, stage = grad[start:start + m], block.staged((rows_c, cols_c), m)
            for i, t in enumerate(ctx.transposed):
                e_i = e[..., i * m:(i + 1) * m]  # (S_i, T_i, m) of direction i's cost
                e_i = e_i if t else e_i.transpose(0, 1)  # -> (T, S, m) of the cost
                torch.mul(e_i, g, out=stage) if i == 0 else stage.addcmul_(e_i, g)
            result[start:start + m].copy_(stage.view(rows_c * cols_c, m).t())
        return result.view(cost.shape).to(cost.dtype), None, None
