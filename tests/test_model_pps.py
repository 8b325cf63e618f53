"""Probability Prompt Selector: similarity, the draw distribution, determinism."""

import pytest
import torch

from mdmf.pps import ProbabilityPromptSelector


def test_similarity_is_mean_of_topk_frame_cosines():
    pps = ProbabilityPromptSelector(topk=3, cosine_eps=0.0)  # the exact cosine
    g = torch.Generator().manual_seed(0)
    frames, prompts = torch.randn(4, 8, 16, generator=g), torch.randn(5, 16, generator=g)
    sim = pps.similarity(frames, prompts)
    assert sim.shape == (4, 5)
    for b in range(4):
        for c in range(5):
            cos = torch.nn.functional.cosine_similarity(frames[b], prompts[c][None], dim=-1)  # (8,)
            torch.testing.assert_close(sim[b, c], cos.sort(descending=True).values[:3].mean())


def test_similarity_uses_the_reference_cosine_by_default():
    """Default: the reference code's `x·y / (‖x‖‖y‖ + 0.01)`, written out per frame in float64."""
    pps = ProbabilityPromptSelector(topk=4)
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(3, 8, 16, generator=g, dtype=torch.float64) * 0.3  # small norms: the epsilon matters
    prompts = torch.randn(5, 16, generator=g, dtype=torch.float64) * 0.3
    sim = pps.similarity(frames, prompts)
    for b in range(3):
        for c in range(5):
            cos = sorted((float(frames[b, t] @ prompts[c]) / (float(frames[b, t].norm() * prompts[c].norm()) + 0.01)
                          for t in range(8)), reverse=True)
            assert float(sim[b, c]) == pytest.approx(sum(cos[:4]) / 4, rel=1e-12)
    exact = ProbabilityPromptSelector(topk=4, cosine_eps=0.0).similarity(frames, prompts)
    assert (exact - sim).abs().max() > 1e-4  # the two cosines really differ here


def test_similarity_batched_over_episodes():
    pps = ProbabilityPromptSelector()
    frames, prompts = torch.randn(2, 3, 8, 16), torch.randn(2, 5, 16)  # (E, M, T, D), (E, N, D)
    sim = pps.similarity(frames, prompts)
    assert sim.shape == (2, 3, 5)
    torch.testing.assert_close(sim[1], pps.similarity(frames[1], prompts[1]))


def test_topk_larger_than_frames_is_an_error():
    with pytest.raises(ValueError, match="top-k"):
        ProbabilityPromptSelector(topk=9).similarity(torch.randn(1, 8, 4), torch.randn(2, 4))


def test_probabilities_use_the_temperature():
    sim = torch.tensor([0.30, 0.31, 0.29])
    p = ProbabilityPromptSelector(temperature=0.005).probabilities(sim)
    torch.testing.assert_close(p, torch.softmax(sim / 0.005, -1))
    assert p[1] > 0.8  # a 0.01 cosine gap already dominates at τ = 0.005


def test_draws_follow_the_probabilities():
    pps = ProbabilityPromptSelector(temperature=0.01)
    sim = torch.tensor([0.0, 0.01, 0.02, -0.01, 0.005])
    p = pps.probabilities(sim).double()
    draws = 20000
    chosen = pps.select(sim.expand(draws, -1), "sample", torch.Generator().manual_seed(3))
    counts = torch.bincount(chosen, minlength=5).double()
    expected = draws * p
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 18.5  # 4 degrees of freedom: P(chi2 > 18.5) ≈ 0.001
    assert int(counts.min()) > 0  # every class is drawn, not only the argmax


def test_same_seed_same_draws_and_different_seed_different_draws():
    pps = ProbabilityPromptSelector(temperature=0.05)
    sim = torch.randn(4, 50, 5) * 0.05  # (E, M, N)
    a = pps.select(sim, "sample", torch.Generator().manual_seed(7))
    b = pps.select(sim, "sample", torch.Generator().manual_seed(7))
    c = pps.select(sim, "sample", torch.Generator().manual_seed(8))
    assert a.shape == (4, 50) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_argmax_is_deterministic_and_ignores_the_generator():
    pps = ProbabilityPromptSelector()
    sim = torch.randn(3, 7, 5)
    first = pps.select(sim, "argmax", torch.Generator().manual_seed(1))
    assert torch.equal(first, sim.argmax(-1))
    assert torch.equal(first, pps.select(sim, "argmax", torch.Generator().manual_seed(2)))


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="sample, argmax"):
        ProbabilityPromptSelector().select(torch.randn(2, 5), "greedy")
