"""The report's t-SNE: the backends (openTSNE, scikit-learn, mdmf's exact torch t-SNE), the order `auto` tries
them, and that each keeps clearly clustered points clustered (measured: kNN agreement and trustworthiness)."""

import math
import sys

import numpy as np
import pytest
import torch

from mdmf.pipeline.apps.tsne import BACKENDS, choose_backend, conditional_affinities, embed, kl_divergence, pca, tsne
from mdmf.pipeline.core.errors import MdmfError


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


def trustworthiness(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Venna & Kaski's trustworthiness: 1 − 2/(n k (2n − 3k − 1)) Σ_i Σ_{j in the embedding's k-NN of i but not the
    input's} (rank of j among i's input-space neighbours − k)."""
    n = len(x)
    dx = ((x[:, None] - x[None]) ** 2).sum(-1)
    dy = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    rank = np.empty((n, n), dtype=int)
    rank[np.arange(n)[:, None], np.argsort(dx, 1, kind="stable")] = np.arange(1, n + 1)
    near_y = np.argsort(dy, 1, kind="stable")[:, :k]
    penalty = np.clip(rank[np.arange(n)[:, None], near_y] - k, 0, None).sum()
    return 1.0 - 2.0 / (n * k * (2 * n - 3 * k - 1)) * penalty


def wide_clusters(k: int = 6, per: int = 40, dim: int = 256, seed: int = 0):
    """k classes in `dim` dimensions, as the report's video embeddings: well separated, overlapping-free."""
    g = np.random.default_rng(seed)
    centres = g.normal(size=(k, dim))
    labels = np.repeat(np.arange(k), per)
    return (centres[labels] + 0.7 * g.normal(size=(k * per, dim))).astype(np.float32), labels


def installed(backend):
    try:
        return choose_backend(backend)[0] == backend
    except MdmfError:
        return False


def test_our_trustworthiness_is_scikit_learns():
    manifold = pytest.importorskip("sklearn.manifold")
    x, _ = wide_clusters(k=3, per=20, dim=10)
    y = x[:, :2] + np.random.default_rng(1).normal(size=(len(x), 2)).astype(np.float32)
    assert trustworthiness(x, y) == pytest.approx(manifold.trustworthiness(x, y, n_neighbors=10), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_keeps_clusters_and_is_deterministic(backend):
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    x, labels = wide_clusters()
    emb = embed(x, backend, perplexity=20.0, iterations=400, seed=3)
    assert emb.backend == backend and emb.warning is None
    assert emb.points.shape == (240, 2) and emb.points.dtype == np.float32 and np.isfinite(emb.points).all()
    assert knn_accuracy(torch.as_tensor(emb.points), torch.as_tensor(labels)) == 1.0
    # measured on this data: 0.973 for each of the three; the same points scrambled: 0.51
    assert trustworthiness(x, emb.points) > 0.95
    assert trustworthiness(x, np.random.default_rng(0).permutation(emb.points)) < 0.6
    np.testing.assert_array_equal(emb.points, embed(x, backend, perplexity=20.0, iterations=400, seed=3).points)


def test_auto_tries_opentsne_then_sklearn_then_the_exact_one(monkeypatch):
    for name in ("openTSNE", "sklearn.manifold"):  # as if each were absent in turn
        if installed({"openTSNE": "opentsne", "sklearn.manifold": "sklearn"}[name]):
            assert choose_backend("auto") == ({"openTSNE": "opentsne", "sklearn.manifold": "sklearn"}[name], None)
        monkeypatch.setitem(sys.modules, name, None)
    backend, warning = choose_backend("auto")
    assert backend == "exact" and "pip install 'mdmf[tsne]'" in warning and "exact" in warning
    x, labels = wide_clusters(k=3, per=20)
    emb = embed(x, "auto", perplexity=15.0, iterations=400)
    assert emb.backend == "exact" and emb.warning == warning
    assert knn_accuracy(torch.as_tensor(emb.points), torch.as_tensor(labels)) == 1.0
    with pytest.raises(MdmfError, match=r"t-SNE backend opentsne: not installed; pip install 'mdmf\[tsne\]'"):
        choose_backend("opentsne")
    with pytest.raises(MdmfError, match="t-SNE backend sklearn: not installed; pip install scikit-learn"):
        choose_backend("sklearn")
    with pytest.raises(MdmfError, match="use auto or one of opentsne, sklearn, exact"):
        choose_backend("umap")
