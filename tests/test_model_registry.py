"""The model list as data: every name in `MODELS` builds, runs the shared interface end to end (encode, fuse, score,
loss, gradient) and answers the pipeline's capability questions; unknown names are clear errors."""

import pytest
import torch

from mdmf import ClassTexts, ModelConfig, build_model
from mdmf.config import model_names
from mdmf.registry import MODELS, trainable_models, untrained_models

SMALL = dict(dim=32, heads=4, mlp_dim=64)
E, N, K, M, T, D, C = 2, 3, 2, 4, 8, 32, 7


def episode(seed=0):
    g = torch.Generator().manual_seed(seed)
    support, prompts = torch.randn(E, N, K, T, D, generator=g), torch.randn(E, N, D, generator=g)
    query, labels = torch.randn(E, M, T, D, generator=g), torch.randint(0, N, (E, M), generator=g)
    episode_classes = torch.stack([torch.randperm(C, generator=g)[:N] for _ in range(E)])
    return support, prompts, query, labels, ClassTexts(torch.randn(C, D, generator=g), episode_classes)


def make(name):
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name, **SMALL))


@pytest.mark.parametrize("name", MODELS)
def test_builds_each_name(name):
    model = make(name)
    assert type(model) is MODELS[name] and model.config.name == name


def test_config_names_are_the_registry():
    assert model_names() == tuple(MODELS) and ModelConfig().name == next(iter(MODELS))
    with pytest.raises(ValueError, match="ModelConfig.name must be one of " + ", ".join(map(repr, MODELS))):
        ModelConfig(name="nonsense")


def test_unknown_name_lists_known_names():
    cfg = ModelConfig(**SMALL)
    cfg.name = "nonsense"  # configs are mutable; build_model checks again
    with pytest.raises(ValueError, match=f"unknown model 'nonsense'; known models: {', '.join(sorted(MODELS))}"):
        build_model(cfg)


def test_invalid_config_is_rejected_before_building():
    cfg = ModelConfig(**SMALL)
    cfg.heads = 5
    with pytest.raises(ValueError, match="heads"):
        build_model(cfg)


@pytest.mark.parametrize("name", MODELS)
def test_eval_forward_is_encode_fuse_score(name):
    """`forward` in eval mode equals its parts composed by hand: encode all videos, `fuse_support`, the queries fused
    with the prompt `forward` chose for them (or none), `score`."""
    model = make(name).eval()
    support, prompts, query, _, _ = episode()
    with torch.no_grad():
        scores = model(support, prompts, query, generator=torch.Generator().manual_seed(3))
        encoded = model.encode(torch.cat([support.reshape(-1, T, D), query.reshape(-1, T, D)]))
        enc_support = {k: v[: E * N * K].reshape(E, N, K, *v.shape[1:]) for k, v in encoded.items()}
        enc_query = {k: v[E * N * K :] for k, v in encoded.items()}
        q_prompts = None
        if scores.prompt_choice is not None:
            q_prompts = torch.gather(prompts, 1, scores.prompt_choice[..., None].expand(E, M, D)).reshape(E * M, D)
        q_tokens = {v: t.reshape(E, M, *t.shape[1:]) for v, t in model.fuse(enc_query, q_prompts, "query").items()}
        manual = model.score(q_tokens, model.fuse_support(enc_support, prompts))
    assert scores.logits.shape == (E, M, N) and torch.isfinite(scores.logits).all()
    assert (scores.prompt_choice is None) == (model.query_prompt_mode == "none")
    torch.testing.assert_close(scores.logits, manual.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_loss_and_gradient(name):
    """Train mode: a finite loss whose "ce" part is the episode cross-entropy of the logits; a model that
    `needs_training` gets a finite, non-zero gradient, one that does not has nothing to train."""
    model = make(name).train()
    support, prompts, query, labels, texts = episode(1)
    scores = model(support, prompts, query, generator=torch.Generator().manual_seed(0), class_texts=texts)
    loss, parts = model.loss(scores, labels)
    assert torch.isfinite(loss) and "ce" in parts
    want_ce = sum(torch.nn.functional.cross_entropy(scores.logits[e], labels[e], reduction="sum")
                  for e in range(E)) / E  # ce_reduction "sum": summed over an episode's queries, mean over episodes
    assert parts["ce"] == pytest.approx(float(want_ce.detach()), rel=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    if not model.needs_training:
        assert not params and name in untrained_models()
        return
    assert name in trainable_models() and name not in untrained_models()
    loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
