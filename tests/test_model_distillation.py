"""Reliability masks and weighted KL of the mutual distillation, on hand-built cases."""

import math

import pytest
import torch

from mdmf.distillation import ViewPosterior, mutual_distillation, reliability_masks, weighted_kl

# Per query: (ĉ_global, c̃_global, ĉ_local, c̃_local) and who is reliable under each condition.
CASES = [
    # ĉ_g  c̃_g   ĉ_l  c̃_l     both  visual  text
    (0.8, 0.30, 0.6, 0.25, "g", "g", "g"),  # global wins both scores
    (0.5, 0.20, 0.7, 0.22, "l", "l", "l"),  # local wins both
    (0.8, 0.20, 0.6, 0.25, "-", "g", "l"),  # split: visual says global, text says local
    (0.5, 0.30, 0.7, 0.22, "-", "l", "g"),  # split the other way
    (0.6, 0.30, 0.6, 0.25, "-", "-", "g"),  # visual tie: strict comparison, nobody wins it
    (0.6, 0.25, 0.6, 0.25, "-", "-", "-"),  # all tied
]
# With ties="local" (the reference code's `local >= global`) a tie counts for the local view: rows 4 and 5 change.
CASES_TIES_LOCAL = CASES[:4] + [
    (0.6, 0.30, 0.6, 0.25, "-", "l", "g"),  # visual tie goes to local, text to global: split under `both`
    (0.6, 0.25, 0.6, 0.25, "l", "l", "l"),  # all tied: local everywhere
]


def posterior(visual_score, text_score, n=5):
    visual_score, text_score = torch.tensor([visual_score]), torch.tensor([text_score])
    return ViewPosterior(torch.full((1, len(visual_score[0]), n), -math.log(n)), visual_score, text_score)


def case_posteriors():
    cols = list(zip(*CASES))
    return posterior(cols[0], cols[1]), posterior(cols[2], cols[3])


@pytest.mark.parametrize("ties,cases", [("neither", CASES), ("local", CASES_TIES_LOCAL)])
@pytest.mark.parametrize("condition,column", [("both", 4), ("visual", 5), ("text", 6)])
def test_masks_per_condition(condition, column, ties, cases):
    glob, local = case_posteriors()
    omega_g, omega_l = reliability_masks(glob, local, condition, ties=ties)
    assert omega_g.shape == (1, len(cases))
    assert omega_g[0].tolist() == [c[column] == "g" for c in cases]
    assert omega_l[0].tolist() == [c[column] == "l" for c in cases]


def test_ties_default_to_the_local_view_and_unknown_ties_are_errors():
    glob, local = case_posteriors()
    default = reliability_masks(glob, local, "both")
    assert [m.tolist() for m in default] == [m.tolist() for m in reliability_masks(glob, local, "both", "local")]
    with pytest.raises(ValueError, match="local, neither"):
        reliability_masks(glob, local, "both", ties="global")


def test_condition_none_selects_every_query_both_ways_and_off_selects_none():
    glob, local = case_posteriors()
    for mask in reliability_masks(glob, local, "none"):
        assert mask.all()
    for mask in reliability_masks(glob, local, "off"):
        assert not mask.any()


def test_unknown_condition_and_direction_are_errors():
    glob, local = case_posteriors()
    with pytest.raises(ValueError, match="both, visual, text, none, off"):
        reliability_masks(glob, local, "always")
    with pytest.raises(ValueError, match="bi, l2g, g2l"):
        mutual_distillation(glob, local, direction="up")


def test_view_posterior_scores():
    d = torch.tensor([[[1.0, 2.0, 3.0]]])
    t = torch.tensor([[[0.1, 0.5, 0.2]]])
    post = ViewPosterior.from_scores(d, t)
    torch.testing.assert_close(post.log_visual.exp(), torch.softmax(-d, -1))
    torch.testing.assert_close(post.visual_score, torch.softmax(-d, -1).max(-1).values)
    torch.testing.assert_close(post.text_score, torch.softmax(t, -1).max(-1).values)


def test_weighted_kl_by_hand():
    # one episode, three queries, two classes; query 1 is not selected
    p_t = torch.tensor([[[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]])
    p_s = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]])
    teacher = ViewPosterior(p_t.log(), torch.tensor([[0.9, 0.6, 0.7]]), torch.tensor([[0.3, 0.5, 0.2]]))
    student = ViewPosterior(p_s.log(), torch.zeros(1, 3), torch.zeros(1, 3))
    selected = torch.tensor([[True, False, True]])

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))

    w0, w2 = 0.9 + 0.3, 0.7 + 0.2
    want = (w0 * kl([0.9, 0.1], [0.5, 0.5]) + w2 * kl([0.3, 0.7], [0.2, 0.8])) / (w0 + w2)
    assert float(weighted_kl(teacher, student, selected)) == pytest.approx(want, rel=1e-5)


def test_weighted_kl_is_mean_of_per_episode_losses():
    g = torch.Generator().manual_seed(0)

    def random_view(e):
        logits = torch.randn(e, 4, 5, generator=g)
        scores = torch.rand(2, e, 4, generator=g)
        return ViewPosterior(torch.log_softmax(logits, -1), scores[0], scores[1])

    teacher, student = random_view(2), random_view(2)
    selected = torch.tensor([[True, True, False, True], [False, False, True, False]])
    both = weighted_kl(teacher, student, selected)
    per_episode = [weighted_kl(*(ViewPosterior(v.log_visual[e:e + 1], v.visual_score[e:e + 1], v.text_score[e:e + 1])
                                 for v in (teacher, student)), selected[e:e + 1]) for e in range(2)]
    torch.testing.assert_close(both, (per_episode[0] + per_episode[1]) / 2)


def test_no_selected_query_gives_zero_and_finite_gradients():
    logits = torch.randn(1, 3, 5, requires_grad=True)
    teacher = ViewPosterior.from_scores(logits, logits)
    student = ViewPosterior.from_scores(logits.flip(-1), logits)
    loss = weighted_kl(teacher, student, torch.zeros(1, 3, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def _two_views(requires_grad=True):
    g = torch.Generator().manual_seed(4)
    d_g, d_l = torch.rand(2, 6, 5, generator=g) * 4, torch.rand(2, 6, 5, generator=g) * 4
    t_g, t_l = torch.randn(2, 6, 5, generator=g), torch.randn(2, 6, 5, generator=g)
    leaves = [x.requires_grad_(requires_grad) for x in (d_g, t_g, d_l, t_l)]
    return leaves, ViewPosterior.from_scores(d_g, t_g), ViewPosterior.from_scores(d_l, t_l)


@pytest.mark.parametrize("reduction", ["sum", "weighted-mean"])
def test_directions_keep_their_term_only(reduction):
    _, glob, local = _two_views(False)
    bi = mutual_distillation(glob, local, "none", "bi", none_reduction=reduction)
    l2g = mutual_distillation(glob, local, "none", "l2g", none_reduction=reduction)
    g2l = mutual_distillation(glob, local, "none", "g2l", none_reduction=reduction)
    assert float(bi.l2g) > 0 and float(bi.g2l) > 0 and float(bi.l2g) != float(bi.g2l)
    assert float(l2g.l2g) == float(bi.l2g) and float(l2g.g2l) == 0.0
    assert float(g2l.g2l) == float(bi.g2l) and float(g2l.l2g) == 0.0
    # L_{l->g}: global teaches local, every query (condition none)
    everyone = torch.ones(2, 6, dtype=torch.bool)
    torch.testing.assert_close(bi.l2g, weighted_kl(glob, local, everyone, reduction=reduction))


def test_condition_none_sums_the_kl_over_queries_by_default():
    """The reference code's unconditioned cell: Σ_q Σ_c P_t log(P_t / P_s) per episode, unweighted, then the mean
    over episodes; written out by hand from the distances."""
    g = torch.Generator().manual_seed(9)
    d_g, d_l = torch.rand(3, 4, 5, generator=g, dtype=torch.float64) * 3, torch.rand(3, 4, 5, generator=g,
                                                                                   dtype=torch.float64) * 3
    t = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    terms = mutual_distillation(ViewPosterior.from_scores(d_g, t), ViewPosterior.from_scores(d_l, t.flip(-1)), "none")
    p_g = torch.exp(-d_g) / torch.exp(-d_g).sum(-1, keepdim=True)
    p_l = torch.exp(-d_l) / torch.exp(-d_l).sum(-1, keepdim=True)
    want_l2g = sum(float((p_g[e] * (p_g[e] / p_l[e]).log()).sum()) for e in range(3)) / 3
    want_g2l = sum(float((p_l[e] * (p_l[e] / p_g[e]).log()).sum()) for e in range(3)) / 3
    assert float(terms.l2g) == pytest.approx(want_l2g, rel=1e-12)
    assert float(terms.g2l) == pytest.approx(want_g2l, rel=1e-12)
    with pytest.raises(ValueError, match="weighted-mean, sum"):
        weighted_kl(*_two_views(False)[1:], torch.ones(2, 6, dtype=torch.bool), reduction="mean")


@pytest.mark.parametrize("detach", [False, True])
def test_detach_teacher_stops_gradient_into_the_teacher(detach):
    (d_g, t_g, d_l, t_l), glob, local = _two_views()
    terms = mutual_distillation(glob, local, "none", "l2g", detach_teacher=detach)  # teacher: global
    terms.l2g.backward()
    assert d_l.grad.abs().sum() > 0  # the student always learns

    def grad_norm(x):
        return 0.0 if x.grad is None else float(x.grad.abs().sum())

    teacher_grad = grad_norm(d_g) + grad_norm(t_g)  # posterior and weights both come from the teacher
    assert (teacher_grad == 0) if detach else (teacher_grad > 0)
    assert grad_norm(t_l) == 0  # the student's text score is not part of L_{l->g}
