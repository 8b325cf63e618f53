"""MDMF end to end on random episodes: gradients, the encode/fuse/score contract, PPS and loss composition."""

import math

import pytest
import torch

from mdmf import MDMF, ModelConfig, build_model, otam_distance

E, N, K, M, T, D = 2, 3, 2, 4, 8, 32
SMALL = dict(dim=D, heads=4, mlp_dim=64)


def make(**overrides) -> MDMF:
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**SMALL, **overrides}))


def episode(seed=0):
    """support (E,N,K,T,D), class_prompts (E,N,D), query (E,M,T,D), labels (E,M). The prompts are close to each other
    so that PPS sampling really samples (at τ = 0.005 distant prompts would always give the argmax)."""
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(E, N, K, T, D, generator=g)
    prompts = torch.randn(1, 1, D, generator=g) + 0.02 * torch.randn(E, N, D, generator=g)
    query = torch.randn(E, M, T, D, generator=g)
    return support, prompts, query, torch.randint(0, N, (E, M), generator=g)


def gen(seed=5):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("views", ["both", "ntc", "local", "global"])
def test_every_parameter_gets_a_gradient(views):
    model = make(views=views).train()
    support, prompts, query, labels = episode()
    loss, _ = model.loss(model(support, prompts, query, generator=gen()), labels)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_forward_equals_encode_select_fuse_score():
    """The composition the evaluator uses (encode and fuse per video, PPS per episode) gives forward's result."""
    model = make().eval()
    support, prompts, query, _ = episode()
    scores = model(support, prompts, query, generator=gen())

    enc_s = model.encode(support.reshape(-1, T, D))
    enc_q = model.encode(query.reshape(-1, T, D))
    sim_all = model.pps_similarity(query.reshape(-1, T, D), prompts.reshape(-1, D)).reshape(E, M, E, N)
    sim = torch.stack([sim_all[e, :, e] for e in range(E)])  # each episode's queries against its own classes
    choice = model.select_prompts(sim, model.config.pps_eval_mode, gen())
    query_prompts = prompts[torch.arange(E)[:, None], choice]  # (E, M, D)
    s_tok = model.fuse(enc_s, prompts[:, :, None].expand(E, N, K, D).reshape(-1, D), "support")
    q_tok = model.fuse(enc_q, query_prompts.reshape(-1, D), "query")
    manual = model.score({v: t.reshape(E, M, T + 1, D) for v, t in q_tok.items()},
                         {v: t.reshape(E, N, K, T + 1, D) for v, t in s_tok.items()})

    assert torch.equal(choice, scores.prompt_choice)
    assert not torch.equal(choice, sim.argmax(-1))  # the episode really exercises sampling
    torch.testing.assert_close(manual.logits, scores.logits, rtol=1e-5, atol=1e-5)
    for v in ("global", "local"):
        torch.testing.assert_close(manual.text_logits[v], scores.text_logits[v], rtol=1e-5, atol=1e-5)


def test_eval_fuse_of_a_video_does_not_depend_on_its_batch():
    model = make().eval()
    g = torch.Generator().manual_seed(3)
    frames, prompts = torch.randn(6, T, D, generator=g), torch.randn(6, D, generator=g)
    alone = model.fuse(model.encode(frames[2:3]), prompts[2:3], "query")
    batched = model.fuse(model.encode(frames), prompts, "query")
    for v in ("global", "local"):
        assert alone[v].shape == (1, T + 1, D)
        torch.testing.assert_close(alone[v][0], batched[v][2], rtol=1e-5, atol=1e-5)


def test_training_draws_follow_the_generator():
    model = make().train()
    support, prompts, query, _ = episode()
    a = model(support, prompts, query, generator=gen(1)).prompt_choice
    b = model(support, prompts, query, generator=gen(1)).prompt_choice
    c = model(support, prompts, query, generator=gen(2)).prompt_choice
    assert a.shape == (E, M) and torch.equal(a, b) and not torch.equal(a, c)


def test_prompts_reach_the_tokens_and_no_pps_means_zero_query_prompt():
    g = torch.Generator().manual_seed(4)
    frames, prompts = torch.randn(3, T, D, generator=g), torch.randn(3, D, generator=g)
    with_pps, without = make().eval(), make(pps=False).eval()
    assert with_pps.query_prompt_mode == "pps" and without.query_prompt_mode == "none"
    enc = with_pps.encode(frames)
    assert not torch.allclose(with_pps.fuse(enc, prompts, "query")["local"], with_pps.fuse(enc, None, "query")["local"])
    zero = with_pps.fuse(enc, torch.zeros(3, D), "query")
    for model in (with_pps, without):
        torch.testing.assert_close(model.fuse(enc, None, "query")["global"], zero["global"])
    # pps=False: a query's prompt is ignored, a support's is not
    torch.testing.assert_close(without.fuse(enc, prompts, "query")["global"], zero["global"])
    assert not torch.allclose(without.fuse(enc, prompts, "support")["global"], zero["global"])
    support, class_prompts, query, _ = episode()
    assert without(support, class_prompts, query).prompt_choice is None


def test_score_uses_frame_tokens_and_fuses_views_with_alphas():
    model = make(alpha_global=0.3, alpha_local=2.0).eval()
    g = torch.Generator().manual_seed(6)
    q = {v: torch.randn(E, M, T + 1, D, generator=g) for v in ("global", "local")}
    s = {v: torch.randn(E, N, K, T + 1, D, generator=g) for v in ("global", "local")}
    scores = model.score(q, s)
    for v in ("global", "local"):
        proto = s[v].mean(2)
        torch.testing.assert_close(scores.distances[v], otam_distance(q[v][..., 1:, :], proto[..., 1:, :]))
        dots = (q[v][:, :, None, 0] * proto[:, None, :, 0]).sum(-1)
        cos = dots / (q[v][:, :, None, 0].norm(dim=-1) * proto[:, None, :, 0].norm(dim=-1) + 0.01)  # reference eps
        torch.testing.assert_close(scores.text_logits[v], cos)
    exact = make(prompt_cosine_eps=0.0).eval().score(q, s).text_logits["local"]
    torch.testing.assert_close(exact, torch.nn.functional.cosine_similarity(
        q["local"][:, :, None, 0], s["local"].mean(2)[:, None, :, 0], dim=-1))
    torch.testing.assert_close(scores.logits, -(0.3 * scores.distances["global"] + 2.0 * scores.distances["local"]))
    first_frame = make(text_score_token="first-frame", prompt_cosine_eps=0.0).score(q, s)
    cos1 = torch.nn.functional.cosine_similarity(q["local"][:, :, None, 1], s["local"].mean(2)[:, None, :, 1], dim=-1)
    torch.testing.assert_close(first_frame.text_logits["local"], cos1)


def test_loss_is_ce_plus_weighted_distillation():
    model = make(distill_weight=0.7, distill_condition="none").train()
    support, prompts, query, labels = episode()
    scores = model(support, prompts, query, generator=gen())
    loss, parts = model.loss(scores, labels)
    assert set(parts) == {"ce", "distill_l2g", "distill_g2l"}
    # ce_reduction=sum (default): summed over an episode's M queries, then averaged over the E episodes
    ce = torch.nn.functional.cross_entropy(scores.logits.reshape(-1, N), labels.reshape(-1), reduction="sum") / E
    assert parts["ce"] == pytest.approx(float(ce.detach()))
    assert parts["distill_l2g"] > 0 and parts["distill_g2l"] > 0
    want = parts["ce"] + 0.7 * (parts["distill_l2g"] + parts["distill_g2l"])
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("overrides", [dict(views="local"), dict(views="ntc"), dict(distill_condition="off")])
def test_no_distillation_without_two_views_or_when_off(overrides):
    model = make(**overrides).train()
    support, prompts, query, labels = episode()
    scores = model(support, prompts, query, generator=gen())
    _, parts = model.loss(scores, labels)
    assert set(parts) == {"ce"}


def test_views_and_their_modules():
    assert make().views == ("global", "local") and set(make().fusion) == {"global", "local"}
    ntc = make(views="ntc")
    assert len(ntc.contexts) == 0 and ntc.fusion["ntc"].self_attention
    assert set(make(views="local").contexts) == {"local"}
    support, prompts, query, _ = episode()
    assert set(ntc.eval()(support, prompts, query, generator=gen()).distances) == {"ntc"}


def test_wrong_frame_shape_and_role_are_errors():
    model = make()
    with pytest.raises(ValueError, match=r"\(B, 8, 32\)"):
        model.encode(torch.randn(2, 6, D))
    with pytest.raises(ValueError, match="support, query"):
        model.fuse(model.encode(torch.randn(2, T, D)), None, "prototype")


def test_rebuilt_from_config_and_state_dict_gives_the_same_scores():
    model = make().eval()
    clone = build_model(ModelConfig.from_dict(model.config.to_dict()))
    clone.load_state_dict(model.state_dict())
    clone.eval()
    support, prompts, query, _ = episode()
    torch.testing.assert_close(model(support, prompts, query, generator=gen()).logits,
                               clone(support, prompts, query, generator=gen()).logits)


def test_summed_ce_balance_on_a_hand_computed_two_query_episode():
    """One episode, two queries, three classes, logits given: CE summed over the queries (the reference code) is
    −log p(y₀) − log p(y₁), computed by hand; `mean` halves it; distillation adds λ times its terms unscaled."""
    model = make()
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]], dtype=torch.float64)  # (E=1, M=2, N=3)
    labels = torch.tensor([[0, 2]])

    def neg_log_p(row, y):
        return -(row[y] - math.log(sum(math.exp(v) for v in row)))

    want = neg_log_p([2.0, 0.0, -1.0], 0) + neg_log_p([0.5, 1.5, 0.0], 2)
    from mdmf.base import Scores
    scores = Scores(logits=logits, distances={})
    model.config.distill_condition = "off"
    loss, parts = model.loss(scores, labels)
    assert float(loss) == pytest.approx(want, rel=1e-12) and parts["ce"] == pytest.approx(want, rel=1e-12)
    model.config.ce_reduction = "mean"
    assert float(model.loss(scores, labels)[0]) == pytest.approx(want / 2, rel=1e-12)
