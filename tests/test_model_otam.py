"""OTAM against a plain cell-by-cell dynamic programme written from docs METHOD §5."""

import math

import numpy as np
import pytest
import torch

from mdmf import otam
from mdmf.otam import frame_cost, otam_cost, otam_distance


def smin(values, lam):
    m = min(values)
    return m - lam * math.log(sum(math.exp(-(v - m) / lam) for v in values))


def brute_otam(cost, lam):
    """One direction, Python floats, one cell at a time."""
    rows, width = len(cost), len(cost[0])
    p = [[0.0] + list(r) + [0.0] for r in cost]
    c = [[0.0] * (width + 2) for _ in range(rows)]
    for m in range(1, width + 2):
        c[0][m] = p[0][m] + c[0][m - 1]
    for l in range(1, rows):
        c[l][1] = p[l][1] + smin([c[l - 1][0], c[l - 1][1], c[l][0]], lam)
        for m in range(2, width + 1):
            c[l][m] = p[l][m] + smin([c[l - 1][m - 1], c[l][m - 1]], lam)
        c[l][width + 1] = p[l][width + 1] + smin([c[l - 1][width], c[l - 1][width + 1], c[l][width]], lam)
    return c[rows - 1][width + 1]


def brute_distance(q, u, lam, bidirectional):
    """q (T, D), u (S, D) float64 tensors -> float."""
    cost = [[1.0 - float(q[i] @ u[j]) / (float(q[i].norm() * u[j].norm()) + 0.01) for j in range(len(u))]
            for i in range(len(q))]
    d = brute_otam(cost, lam)
    if bidirectional:
        d += brute_otam([list(col) for col in zip(*cost)], lam)
    return d


@pytest.mark.parametrize("frames", [1, 2, 3, 8])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("lam", [0.5, 0.1])
def test_matches_brute_force(frames, bidirectional, lam):
    g = torch.Generator().manual_seed(frames * 10 + int(bidirectional))
    q = torch.randn(3, frames, 6, generator=g, dtype=torch.float64)
    u = torch.randn(4, frames, 6, generator=g, dtype=torch.float64)
    got = otam_distance(q, u, smoothing=lam, bidirectional=bidirectional)
    assert got.shape == (3, 4)
    want = torch.tensor([[brute_distance(q[i], u[j], lam, bidirectional) for j in range(4)] for i in range(3)],
                        dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rows,cols", [(2, 5), (5, 2), (1, 4), (4, 1)])
def test_rectangular_cost_matches_brute_force(rows, cols):
    cost = torch.rand(rows, cols, dtype=torch.float64, generator=torch.Generator().manual_seed(rows * cols)) * 2
    torch.testing.assert_close(otam_cost(cost, 0.5), torch.tensor(brute_otam(cost.tolist(), 0.5), dtype=torch.float64))


def test_float32_close_to_float64():
    g = torch.Generator().manual_seed(0)
    q, u = torch.randn(2, 5, 8, 32, generator=g), torch.randn(2, 5, 8, 32, generator=g)
    torch.testing.assert_close(otam_distance(q, u), otam_distance(q.double(), u.double()).float(), rtol=1e-5, atol=1e-5)


def test_batched_equals_per_pair():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 4, 8, 16, generator=g, dtype=torch.float64)  # (E, Q, T, D)
    u = torch.randn(3, 5, 8, 16, generator=g, dtype=torch.float64)  # (E, C, T, D)
    batched = otam_distance(q, u)
    assert batched.shape == (3, 4, 5)
    for e in range(3):
        for i in range(4):
            for c in range(5):
                single = otam_distance(q[e, i][None], u[e, c][None])[0, 0]
                torch.testing.assert_close(batched[e, i, c], single, rtol=1e-12, atol=1e-12)


def test_leading_dims_broadcast():
    q, u = torch.randn(2, 3, 4, 8), torch.randn(1, 5, 4, 8)
    torch.testing.assert_close(otam_distance(q, u), otam_distance(q, u.expand(2, -1, -1, -1)))


def test_gradient_flows_to_both_inputs():
    q = torch.randn(2, 3, 8, 16, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, 4, 8, 16, dtype=torch.float64, requires_grad=True)
    otam_distance(q, u).sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
    # analytic gradient of the scan agrees with finite differences
    q2, u2 = q.detach()[:1, :1, :4, :5].requires_grad_(), u.detach()[:1, :2, :4, :5].requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: otam_distance(a, b), (q2, u2))


def test_order_matters():
    g = torch.Generator().manual_seed(2)
    seq = torch.randn(8, 32, generator=g)
    d = otam_distance(seq[None], torch.stack([seq, seq.flip(0)]))  # (1, 2)
    assert d[0, 0] < d[0, 1]


def test_single_frame_is_the_frame_cost():
    q, u = torch.randn(1, 1, 16), torch.randn(1, 1, 16)
    cost = frame_cost(q, u)[0, 0, 0, 0]
    torch.testing.assert_close(otam_distance(q, u, bidirectional=False)[0, 0], cost)
    torch.testing.assert_close(otam_distance(q, u)[0, 0], 2 * cost)


def test_bidirectional_is_sum_of_both_directions():
    q, u = torch.randn(2, 8, 16), torch.randn(3, 8, 16)
    cost = frame_cost(q, u)
    torch.testing.assert_close(otam_distance(q, u), otam_cost(cost) + otam_cost(cost.transpose(-1, -2)))
    assert not torch.allclose(otam_cost(cost), otam_cost(cost.transpose(-1, -2)))


def test_rejects_non_positive_smoothing():
    with pytest.raises(ValueError, match="smoothing"):
        otam_cost(torch.rand(3, 3), 0.0)


# ---- the column scan: blocks, code paths, gradients -----------------------------------------------------------
def numpy_otam(cost: np.ndarray, lam: float) -> np.ndarray:
    """METHOD §5 in numpy, written again from the text: `(N, T, S)` float64 -> `(N,)`, one cell at a time."""
    n, rows, width = cost.shape
    P = np.zeros((n, rows, width + 2))
    P[:, :, 1:-1] = cost
    C = np.zeros_like(P)

    def smin(*xs):  # -λ log Σ exp(-x/λ), stable
        z = np.stack(xs) / -lam
        top = z.max(0)
        return -lam * (top + np.log(np.exp(z - top).sum(0)))

    for m in range(1, width + 2):
        C[:, 0, m] = P[:, 0, m] + C[:, 0, m - 1]
    for l in range(1, rows):
        C[:, l, 1] = P[:, l, 1] + smin(C[:, l - 1, 0], C[:, l - 1, 1], C[:, l, 0])
        for m in range(2, width + 1):
            C[:, l, m] = P[:, l, m] + smin(C[:, l - 1, m - 1], C[:, l, m - 1])
        C[:, l, width + 1] = P[:, l, width + 1] + smin(C[:, l - 1, width], C[:, l - 1, width + 1], C[:, l, width])
    return C[:, rows - 1, width + 1]


def autograd_otam(cost: torch.Tensor, lam: float) -> torch.Tensor:
    """The same recurrence as torch operations on `(..., T, S)`, one cell at a time, differentiated by autograd."""
    P = torch.nn.functional.pad(cost, (1, 1))
    rows, width = P.shape[-2:]
    zero = P.new_zeros(P.shape[:-2])
    C = [[zero] * width for _ in range(rows)]
    smin = lambda *xs: -lam * torch.logsumexp(torch.stack(xs) / -lam, 0)  # noqa: E731
    for m in range(1, width):
        C[0][m] = P[..., 0, m] + C[0][m - 1]
    for l in range(1, rows):
        for m in range(1, width):
            terms = [C[l - 1][m - 1], C[l][m - 1]] + ([C[l - 1][m]] if m in (1, width - 1) else [])
            C[l][m] = P[..., l, m] + smin(*terms)
    return C[-1][-1]


@pytest.fixture(params=[None, 3], ids=["one-block", "blocks-of-3"])
def block_lanes(request, monkeypatch):
    """The scan with its default block size, and split into blocks of a few lanes (uneven last block)."""
    if request.param is not None:
        monkeypatch.setattr(otam, "CPU_BLOCK_LANES", request.param)
    return request.param


@pytest.fixture(params=["composed", "torch.logaddexp"])
def logaddexp_path(request, monkeypatch):
    """Both code paths of the log-add-exp: the CPU's composed one, and torch.logaddexp (the one CUDA takes)."""
    if request.param == "torch.logaddexp":
        monkeypatch.setattr(otam, "COMPOSED_LOGADDEXP_DEVICES", set())
    return request.param


@pytest.mark.parametrize("rows,cols", [(3, 5), (5, 3), (1, 6), (6, 1), (8, 8), (2, 9)])
@pytest.mark.parametrize("lam", [0.05, 0.5, 2.0])
def test_matches_numpy_transcription(rows, cols, lam, block_lanes, logaddexp_path):
    g = torch.Generator().manual_seed(rows * 100 + cols)
    cost = torch.rand(7, rows, cols, generator=g, dtype=torch.float64) * 2  # cosine costs lie in [0, 2]
    want = torch.from_numpy(numpy_otam(cost.numpy(), lam))
    torch.testing.assert_close(otam_cost(cost, lam), want, rtol=1e-6, atol=0)
    torch.testing.assert_close(otam_cost(cost.mT, lam), torch.from_numpy(numpy_otam(cost.mT.numpy(), lam)),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("frames,support_frames", [(3, 5), (5, 3), (6, 6)])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("lam", [0.1, 0.5])
def test_forward_and_gradients_match_autograd_reference(frames, support_frames, bidirectional, lam, block_lanes,
                                                        logaddexp_path):
    g = torch.Generator().manual_seed(frames * 10 + support_frames)
    q = torch.randn(2, 3, frames, 8, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, 4, support_frames, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 3, 4, generator=g, dtype=torch.float64)  # a weighted sum: every pair's gradient differs
    got = otam_distance(q, u, lam, bidirectional)
    cost = frame_cost(q, u)
    want = autograd_otam(cost, lam) + (autograd_otam(cost.mT, lam) if bidirectional else 0)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    got_grads = torch.autograd.grad((got * w).sum(), (q, u))
    want_grads = torch.autograd.grad((want * w).sum(), (q, u))
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("rows,cols", [(3, 4), (4, 3), (1, 3), (3, 1), (4, 4)])
def test_gradcheck_cost(rows, cols, block_lanes):
    cost = torch.rand(3, rows, cols, dtype=torch.float64, generator=torch.Generator().manual_seed(rows + 7 * cols))
    cost = (cost * 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: otam_cost(c, 0.3), (cost,))
    assert torch.autograd.gradcheck(lambda c: otam_cost(c.mT, 0.3), (cost,))


@pytest.mark.parametrize("frames,support_frames", [(3, 4), (4, 3), (4, 4)])
def test_gradcheck_distance(frames, support_frames, block_lanes):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, frames, 3, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, support_frames, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: otam_distance(a, b, 0.5, bidirectional=True), (q, u))
    assert torch.autograd.gradcheck(lambda a, b: otam_distance(a, b, 0.5, bidirectional=False), (q, u))


def test_any_cost_layout():
    """otam_cost takes a cost of any strides (contiguous, transposed, broadcast) and its gradient has its shape."""
    g = torch.Generator().manual_seed(4)
    base = torch.rand(4, 3, 5, 6, generator=g, dtype=torch.float64) * 2
    want = torch.from_numpy(numpy_otam(base.reshape(-1, 5, 6).numpy(), 0.5)).reshape(4, 3)
    torch.testing.assert_close(otam_cost(base, 0.5), want)
    torch.testing.assert_close(otam_cost(base.mT.contiguous().mT, 0.5), want)
    torch.testing.assert_close(otam_cost(base.transpose(0, 1), 0.5), want.T)
    row = base[:1].expand(4, -1, -1, -1).requires_grad_()  # stride 0 in a leading dim
    torch.testing.assert_close(otam_cost(row, 0.5), want[:1].expand(4, -1))
    otam_cost(row, 0.5).sum().backward()
    assert row.grad.shape == row.shape
    plain = base[0, 0].requires_grad_()  # no leading dims
    torch.testing.assert_close(otam_cost(plain, 0.5), want[0, 0])
    otam_cost(plain, 0.5).backward()
    assert plain.grad.shape == (5, 6)


def test_frame_cost_formula():
    g = torch.Generator().manual_seed(5)
    q, u = torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64), torch.randn(1, 5, 7, 6, generator=g,
                                                                               dtype=torch.float64)
    want = 1 - torch.einsum("eqtd,ecsd->eqcts", q, u.expand(2, -1, -1, -1)) / (
        q.norm(dim=-1)[:, :, None, :, None] * u.norm(dim=-1)[:, None, :, None, :] + 0.01)
    torch.testing.assert_close(frame_cost(q, u), want, rtol=1e-12, atol=1e-12)


def test_small_smoothing_float32_stays_finite_and_close():
    """λ = 0.01 makes exp(-C/λ) underflow float32 many times over; the log-domain scan does not mind."""
    g = torch.Generator().manual_seed(6)
    q, u = torch.randn(3, 8, 16, generator=g), torch.randn(4, 6, 16, generator=g)
    got = otam_distance(q, u, 0.01)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, otam_distance(q.double(), u.double(), 0.01).float(), rtol=1e-5, atol=1e-5)


def test_half_precision_cost():
    cost = torch.rand(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    got = otam_cost(cost.half(), 0.5)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.double(), otam_cost(cost.half().double(), 0.5), rtol=1e-3, atol=1e-3)


# ---- evaluation on the CPU: the exp-domain path from the frames ------------------------------------------------
def log_domain_distance(q, u, lam, bidirectional):
    """The log-domain scan on `frame_cost` (the path training and CUDA take), for comparison."""
    cost = frame_cost(q, u)
    d = otam_cost(cost, lam)
    return d + otam_cost(cost.mT, lam) if bidirectional else d


@pytest.fixture(params=[None, 3], ids=["one-block", "blocks-of-3"])
def exp_block_lanes(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(otam, "EXP_BLOCK_LANES", request.param)
    return request.param


@pytest.mark.parametrize("q_shape,u_shape", [
    ((7, 8, 5), (3, 8, 5)),  # shared supports, square
    ((7, 3, 5), (3, 6, 5)),  # T < S
    ((7, 6, 5), (3, 2, 5)),  # T > S
    ((2, 4, 5, 6), (2, 3, 7, 6)),  # per-entry supports (an episode batch), T ≠ S
    ((2, 4, 5, 6), (1, 3, 5, 6)),  # supports broadcast over the batch
    ((4, 5, 6), (2, 3, 5, 6)),  # queries broadcast over the batch
    ((3, 2, 8, 6), (2, 8, 6)),  # leading dims on the queries only
    ((1, 1, 6), (1, 1, 6)),  # one frame
])
@pytest.mark.parametrize("lam", [0.05, 0.5, 2.0])
def test_exp_domain_matches_log_domain_and_numpy(q_shape, u_shape, lam, exp_block_lanes):
    g = torch.Generator().manual_seed(sum(q_shape) * 7 + sum(u_shape))
    q = torch.randn(*q_shape, generator=g, dtype=torch.float64)
    u = torch.randn(*u_shape, generator=g, dtype=torch.float64)
    assert otam._exp_domain_applies(q, u, lam)
    cost = frame_cost(q, u)
    for bidirectional in (True, False):
        got = otam_distance(q, u, lam, bidirectional)
        want = log_domain_distance(q, u, lam, bidirectional)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
        flat = cost.reshape(-1, *cost.shape[-2:]).numpy()
        independent = numpy_otam(flat, lam) + (numpy_otam(flat.transpose(0, 2, 1).copy(), lam) if bidirectional else 0)
        torch.testing.assert_close(got.reshape(-1), torch.from_numpy(independent), rtol=1e-6, atol=0)


def test_exp_domain_only_where_it_cannot_underflow(monkeypatch):
    """Evaluation on the CPU takes the exp domain when `(2/λ)(T+S)` is in range for the dtype; otherwise, with a
    gradient, or on other devices, the log-domain scan. Both give the same distances."""
    q, u = torch.randn(3, 8, 16, dtype=torch.float64), torch.randn(2, 8, 16, dtype=torch.float64)
    assert otam._exp_domain_applies(q, u, 0.5) and otam._exp_domain_applies(q.float(), u.float(), 0.5)
    assert otam._exp_domain_applies(q, u, 0.05) and not otam._exp_domain_applies(q.float(), u.float(), 0.05)
    assert not otam._exp_domain_applies(q, u, 0.04)  # float64: 2.001/0.04 · 16 > 700
    assert not otam._exp_domain_applies(q.requires_grad_(), u, 0.5)
    with torch.no_grad():
        assert otam._exp_domain_applies(q, u, 0.5)
    q = q.detach()
    monkeypatch.setattr(otam, "EXP_DOMAIN_DEVICES", set())
    assert not otam._exp_domain_applies(q, u, 0.5)


def test_exp_domain_is_the_path_taken(monkeypatch):
    """Under no_grad otam_distance does not build the full cost (the exp path); with a gradient it does."""
    calls = []
    monkeypatch.setattr(otam, "frame_cost", lambda *a: calls.append(1) or frame_cost(*a))
    q, u = torch.randn(3, 8, 16), torch.randn(2, 8, 16)
    with torch.no_grad():
        a = otam_distance(q, u)
    assert calls == []
    b = otam_distance(q.requires_grad_(), u)
    assert calls == [1]
    torch.testing.assert_close(a, b.detach(), rtol=1e-6, atol=0)


def test_exp_domain_float32_and_extremes():
    g = torch.Generator().manual_seed(8)
    q, u = torch.randn(4, 3, 8, 32, generator=g), torch.randn(4, 5, 8, 32, generator=g)
    q[0, 0, 2] = 0  # a zero frame: cost 1 against everything
    u[1, 1] = q[1, 1]  # a perfect match: cost near 0 on the diagonal
    want = log_domain_distance(q.double(), u.double(), 0.5, True)
    got = otam_distance(q, u)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=0)
    # at the edge of float32's range, λ = 2.001·16/80: the smallest products are ~e^-80, still normal numbers
    lam = 2.001 * 16 / 80
    # (float32 as the log-domain scan in float32 is: a distance can be near 0, so an absolute tolerance too)
    want = log_domain_distance(q.double(), u.double(), lam, True)
    torch.testing.assert_close(otam_distance(q, u, lam).double(), want, rtol=1e-5, atol=1e-5)
    half = otam_distance(q.half(), u.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.double(), log_domain_distance(q.half().double(), u.half().double(), 0.5, True),
                               rtol=1e-3, atol=1e-3)


def test_exp_domain_token_slices(exp_block_lanes):
    """The models pass tokens 1..T of `(E, M, L, D)` tokens, a non-contiguous slice: copied per block, same result."""
    g = torch.Generator().manual_seed(9)
    q_tokens = torch.randn(5, 4, 7, 6, generator=g, dtype=torch.float64)
    u_tokens = torch.randn(5, 3, 7, 6, generator=g, dtype=torch.float64)
    q, u = q_tokens[..., 1:, :], u_tokens[..., 1:, :]
    want = log_domain_distance(q.contiguous(), u.contiguous(), 0.5, True)
    for _ in range(2):  # the second call reuses the work buffers
        torch.testing.assert_close(otam_distance(q, u), want, rtol=1e-10, atol=0)


@pytest.mark.parametrize("q_shape,u_shape,want", [((0, 8, 16), (5, 8, 16), (0, 5)), ((3, 8, 16), (0, 8, 16), (3, 0)),
                                                  ((0, 2, 8, 16), (0, 3, 8, 16), (0, 2, 3))])
def test_empty_inputs(q_shape, u_shape, want):
    with torch.no_grad():
        assert otam_distance(torch.randn(*q_shape), torch.randn(*u_shape)).shape == want
