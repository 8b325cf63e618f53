"""t-SNE for the report's feature-distribution figure: `embed` picks the fastest implementation installed.

Backends, in the order `backend="auto"` tries them:

* `opentsne`: openTSNE (the extra `mdmf[tsne]`, also in `mdmf[test]`): Barnes-Hut / FFT gradients, exact
  neighbours below 1,000 points; about 1 s for the report's 600 videos.
* `sklearn`: scikit-learn's `TSNE` (Barnes-Hut), when scikit-learn is installed but openTSNE is not.
* `exact`: mdmf's own exact t-SNE in torch (`tsne` below), needing nothing; O(n²) memory and time, fine up to a few
  thousand points, and `auto` says so in a warning naming the extra when it falls back to it.

Every backend gets the same input (PCA to at most 50 dimensions, `pca`), perplexity (capped at (n − 1) / 3), PCA
initialisation, 250 iterations of early exaggeration 12 within `iterations` in total (scikit-learn needs at least
250 in total), and is deterministic for a given seed. A backend asked for by name that is not installed is an
error saying what to install.

The exact one: van der Maaten & Hinton (2008), the same recipe as the reference implementation and scikit-learn's
exact method: per-point Gaussian bandwidths found by bisection so that each conditional distribution has the
requested perplexity, symmetrised affinities, a Student-t kernel in the embedding, early exaggeration, momentum and
per-parameter gains. No random draws.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from mdmf.pipeline.core.errors import MdmfError

BACKENDS = ("opentsne", "sklearn", "exact")  # the order `auto` tries them
MODULES = {"opentsne": "openTSNE", "sklearn": "sklearn.manifold"}
INSTALL = {"opentsne": "pip install 'mdmf[tsne]' (openTSNE)", "sklearn": "pip install scikit-learn"}
EXAGGERATION_ITERATIONS = 250


@dataclass
class Embedding:
    points: np.ndarray  # (n, dims) float32, centred
    backend: str  # the backend that computed it
    warning: str | None = None  # set when `auto` fell back to the slow exact t-SNE


def _importable(backend: str) -> bool:
    if backend == "exact":
        return True
    try:
        importlib.import_module(MODULES[backend])
        return True
    except ImportError:
        return False


def choose_backend(backend: str = "auto") -> tuple[str, str | None]:
    """(the backend to use, a warning or None): `auto` -> the first of BACKENDS that is installed; a named one must
    be installed (MdmfError naming what to install)."""
    if backend == "auto":
        name = next(b for b in BACKENDS if _importable(b))
        warning = None
        if name == "exact":
            warning = ("neither openTSNE nor scikit-learn is installed: the t-SNE is mdmf's exact O(n²) one (slow "
                       f"beyond a few thousand points); {INSTALL['opentsne']} for a faster one")
        return name, warning
    if backend not in BACKENDS:
        raise MdmfError(f"t-SNE backend {backend!r}: use auto or one of {', '.join(BACKENDS)}")
    if not _importable(backend):
        raise MdmfError(f"t-SNE backend {backend}: not installed; {INSTALL[backend]}, or use --tsne-backend auto")
    return backend, None


def embed(x: torch.Tensor | np.ndarray, backend: str = "auto", dims: int = 2, perplexity: float = 30.0,
          iterations: int = 750, seed: int = 0, pca_dims: int = 50) -> Embedding:
    """Embed `x (n, d)` in `(n, dims)` with the chosen backend (see the module docstring)."""
    name, warning = choose_backend(backend)
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    if name == "exact":
        y = tsne(x, dims=dims, perplexity=perplexity, iterations=iterations, pca_dims=pca_dims).numpy()
        return Embedding(y, name, warning)
    xp = pca(x.to(torch.float64), pca_dims).numpy()
    perplexity = min(float(perplexity), (n - 1) / 3.0)
    early = min(EXAGGERATION_ITERATIONS, iterations)
    if name == "opentsne":
        from openTSNE import TSNE

        y = np.asarray(TSNE(n_components=dims, perplexity=perplexity, early_exaggeration_iter=early,
                            n_iter=max(iterations - early, 1), initialization="pca", random_state=seed,
                            n_jobs=1).fit(xp))
    else:
        from sklearn.manifold import TSNE

        import inspect

        steps = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"  # before 1.5: n_iter
        y = TSNE(n_components=dims, perplexity=perplexity, init="pca", random_state=seed,
                 **{steps: max(iterations, EXAGGERATION_ITERATIONS)}).fit_transform(xp)
    y = y.astype(np.float32)
    return Embedding(y - y.mean(0, keepdims=True), name, warning)


def pca(x: torch.Tensor, dims: int) -> torch.Tensor:
    """`(n, d)` -> `(n, min(dims, d, n))`: centred, projected on the leading principal axes (signs fixed so that
    each axis' largest-magnitude coordinate is positive, which makes the result reproducible)."""
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    k = min(dims, v.shape[0])
    y = x @ v[:k].T
    sign = torch.sign(y.gather(0, y.abs().argmax(0, keepdim=True)))
    return y * torch.where(sign == 0, torch.ones_like(sign), sign)


def conditional_affinities(sq_dist: torch.Tensor, perplexity: float, steps: int = 64) -> torch.Tensor:
    """`(n, n)` squared distances -> `(n, n)` rows P(j | i) whose entropy is log(perplexity) (nats).

    The precision β_i = 1 / (2σ_i²) of each row is found by bisection on log β, all rows at once.
    """
    n = sq_dist.shape[0]
    target = math.log(perplexity)
    lo = torch.full((n, 1), -50.0, dtype=sq_dist.dtype)
    hi = torch.full((n, 1), 50.0, dtype=sq_dist.dtype)
    mask = ~torch.eye(n, dtype=torch.bool)
    d = sq_dist - sq_dist.masked_fill(~mask, float("inf")).min(1, keepdim=True).values  # shift: stable exp
    for _ in range(steps):
        mid = (lo + hi) / 2
        p = torch.exp(-d * mid.exp()) * mask
        p = p / p.sum(1, keepdim=True)
        entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1, keepdim=True)
        too_flat = entropy > target  # entropy too high: the kernel is too wide, raise β
        lo = torch.where(too_flat, mid, lo)
        hi = torch.where(too_flat, hi, mid)
    beta = ((lo + hi) / 2).exp()
    p = torch.exp(-d * beta) * mask
    return p / p.sum(1, keepdim=True)


def tsne(x: torch.Tensor, dims: int = 2, perplexity: float = 30.0, iterations: int = 750,
         early_exaggeration: float = 12.0, exaggeration_iterations: int = 250, pca_dims: int = 50) -> torch.Tensor:
    """Embed `x (n, d)` in `(n, dims)` float32 coordinates. `perplexity` is capped at (n − 1) / 3."""
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    x = pca(x.detach().to(torch.float64), pca_dims)
    perplexity = min(float(perplexity), (n - 1) / 3.0)
    p = conditional_affinities(torch.cdist(x, x).pow(2), perplexity)
    p = ((p + p.T) / (2.0 * n)).clamp_min(1e-12)  # symmetric joint affinities, sum 1

    y = pca(x, dims)
    y = 1e-4 * y / y[:, 0].std().clamp_min(1e-12)  # PCA initialisation, scaled small (as scikit-learn)
    lr = max(n / early_exaggeration / 4.0, 50.0)  # the "auto" learning rate of Belkina et al. (2019)
    velocity = torch.zeros_like(y)
    gains = torch.ones_like(y)
    for it in range(iterations):
        exaggeration = early_exaggeration if it < exaggeration_iterations else 1.0
        momentum = 0.5 if it < exaggeration_iterations else 0.8
        num = 1.0 / (1.0 + torch.cdist(y, y).pow(2))  # Student-t kernel, (n, n)
        num.fill_diagonal_(0.0)
        q = (num / num.sum()).clamp_min(1e-12)
        w = (exaggeration * p - q) * num  # (n, n)
        grad = 4.0 * (w.sum(1, keepdim=True) * y - w @ y)  # ∂KL/∂y_i = 4 Σ_j w_ij (y_i − y_j)
        same_sign = torch.sign(grad) == torch.sign(velocity)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01)
        velocity = momentum * velocity - lr * gains * grad
        y = y + velocity
    return (y - y.mean(0, keepdim=True)).to(torch.float32)


def kl_divergence(x: torch.Tensor, y: torch.Tensor, perplexity: float = 30.0) -> float:
    """KL(P ‖ Q) of an embedding `y (n, dims)` of `x (n, d)`: the quantity t-SNE minimises (for tests)."""
    n = x.shape[0]
    x = pca(x.detach().to(torch.float64), 50)
    p = conditional_affinities(torch.cdist(x, x).pow(2), min(perplexity, (n - 1) / 3.0))
    p = ((p + p.T) / (2.0 * n)).clamp_min(1e-12)
    num = 1.0 / (1.0 + torch.cdist(y.double(), y.double()).pow(2))
    num.fill_diagonal_(0.0)
    q = (num / num.sum()).clamp_min(1e-12)
    off = ~torch.eye(n, dtype=torch.bool)
    return float((p * torch.log(p / q))[off].sum())
