"""`protonet` under `--preset reference-protonet` is the CLIP-FSAR codebase's `CNN_TSN` head with its training loss,
written out here by hand in float64 from the facts of that code: each video the mean of its frames; default branch:
a class's logit is the mean over its support videos of `x·y / (‖x‖‖y‖ + 0.01)`; `norm_sq_dist` branch:
`-‖query − mean of the class's pooled support videos‖²`; the loss `F.cross_entropy(logits, labels)` (averaged over
the episode's queries) divided by the episodes per step and accumulated over them. No parameters: the gradients
compared are those of the inputs (what e2e training sends into the backbone)."""

import pytest
import torch
import torch.nn.functional as F

from mdmf import ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset

E, N, M, T, D = 2, 5, 4, 8, 16


def authors_tsn_episode(support, query, norm_sq_dist):
    """support (N, K, T, D) in class order, query (M, T, D) -> logits (M, N) of CNN_TSN."""
    n, k = support.shape[:2]
    s = support.reshape(n * k, T, D).mean(1)  # (N·K, D), class c's videos are rows c·K .. c·K + K − 1
    q = query.mean(1)
    labels = torch.arange(n).repeat_interleave(k)
    if norm_sq_dist:
        prototypes = torch.stack([s[labels == c].mean(0) for c in range(n)])
        return -torch.stack([torch.norm(q - prototypes[c], dim=-1) ** 2 for c in range(n)], dim=1)
    sim = (q @ s.T) / (q.norm(dim=-1)[:, None] * s.norm(dim=-1)[None, :] + 0.01)  # cos_sim, eps 0.01
    return torch.stack([sim[:, labels == c].mean(1) for c in range(n)], dim=1)


def inputs(seed, shot):
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(E, N, shot, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    query = torch.randn(E, M, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    prompts = torch.randn(E, N, D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, N, (E, M), generator=g)
    return support, prompts, query, labels


def check_against_authors(model, seed, shot, norm_sq_dist):
    support, prompts, query, labels = inputs(seed, shot)
    scores = model(support, prompts, query)
    ours, parts = model.loss(scores, labels)
    theirs = 0
    for e in range(E):
        logits = authors_tsn_episode(support[e], query[e], norm_sq_dist)
        torch.testing.assert_close(scores.logits[e], logits, rtol=0, atol=1e-12)
        theirs = theirs + F.cross_entropy(logits, labels[e]) / E  # / BATCH_SIZE, accumulated over the step
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    assert set(parts) == {"ce"}
    for a, b in zip(torch.autograd.grad(ours, [support, query]), torch.autograd.grad(theirs, [support, query])):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed,shot", [(0, 1), (1, 3), (2, 5)])
def test_reference_preset_is_cnn_tsn(seed, shot):
    cfg = ModelConfig.from_dict({**load_preset("reference-protonet").model, "dim": D, "frames": T})
    assert (cfg.name, cfg.protonet_metric, cfg.ce_reduction) == ("protonet", "cosine", "mean")
    check_against_authors(build_model(cfg).double().train(), seed, shot, norm_sq_dist=False)


@pytest.mark.parametrize("seed,shot", [(3, 1), (4, 5)])
def test_squared_euclidean_is_its_norm_sq_dist_branch(seed, shot):
    cfg = ModelConfig.from_dict({**load_preset("reference-protonet").model, "dim": D, "frames": T,
                                 "protonet_metric": "squared-euclidean"})
    model = build_model(cfg).double()
    assert not model.scores_shots  # the prototype path: a class's shots enter only through their mean
    check_against_authors(model, seed, shot, norm_sq_dist=True)


def test_the_two_metrics_rank_differently_and_only_cosine_needs_every_shot():
    support, prompts, query, _ = inputs(5, 5)
    cos = build_model(ModelConfig(name="protonet", dim=D, frames=T)).double()
    sq = build_model(ModelConfig(name="protonet", dim=D, frames=T, protonet_metric="squared-euclidean")).double()
    assert cos.scores_shots and not cos.needs_training and list(cos.parameters()) == []
    a, b = cos(support, prompts, query).logits, sq(support, prompts, query).logits
    assert not torch.equal(a.argsort(-1), b.argsort(-1))
    with pytest.raises(ValueError, match="score, not score_prototypes"):
        cos.score_prototypes({"protonet": query[:, :, :1]}, {"protonet": support[:, :, 0, :1]})
