"""The torch t-SNE behind the report's distribution figure."""

import math

import pytest
import torch

from mdmf.pipeline.apps.tsne import conditional_affinities, kl_divergence, pca, tsne


def clusters(per: int = 40, k: int = 4, dim: int = 20, spread: float = 10.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(k, dim, generator=g)
    labels = torch.arange(k).repeat_interleave(per)
    return centres[labels] + torch.randn(k * per, dim, generator=g), labels


def knn_accuracy(y: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    d = torch.cdist(y, y)
    d.fill_diagonal_(float("inf"))
    nearest = labels[d.topk(k, largest=False).indices]  # (n, k)
    return float((nearest.mode(1).values == labels).float().mean())


def test_rows_reach_the_requested_perplexity():
    x, _ = clusters()
    p = conditional_affinities(torch.cdist(x.double(), x.double()).pow(2), perplexity=15.0)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
    torch.testing.assert_close(entropy, torch.full_like(entropy, math.log(15.0)), rtol=0, atol=1e-6)
    torch.testing.assert_close(p.sum(1), torch.ones(len(x), dtype=p.dtype))
    assert float(p.diagonal().abs().max()) == 0.0


def test_separated_clusters_stay_separated_and_kl_drops():
    x, labels = clusters()
    y = tsne(x, perplexity=15.0, iterations=400)
    assert y.shape == (160, 2) and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert knn_accuracy(y, labels) == 1.0
    start = pca(x.double(), 2) * 1e-4
    assert kl_divergence(x, y, 15.0) < 0.5 * kl_divergence(x, start, 15.0)


def test_deterministic_and_tiny_inputs():
    x, _ = clusters(per=5, k=2)
    torch.testing.assert_close(tsne(x, iterations=100), tsne(x, iterations=100), rtol=0, atol=0)
    assert tsne(x[:4], iterations=50).shape == (4, 2)  # perplexity capped at (n - 1) / 3
    with pytest.raises(ValueError, match="at least 3"):
        tsne(x[:2])
