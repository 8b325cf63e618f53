"""OTAM against a plain cell-by-cell dynamic programme written from docs METHOD §5."""

import math

import pytest
import torch

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
