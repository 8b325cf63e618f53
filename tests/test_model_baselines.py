"""CLIP-FSAR and the OTAM baseline on the shared interface."""

import pytest
import torch
import torch.nn.functional as F

from mdmf import ClassTexts, ModelConfig, OTAMBaseline, build_model, otam_distance

E, N, K, M, T, D, C = 2, 3, 2, 4, 8, 32, 10
SMALL = dict(dim=D, heads=4, mlp_dim=64)


def make(name, **overrides):
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name, **{**SMALL, **overrides}))


def episode(seed=0):
    g = torch.Generator().manual_seed(seed)
    support, prompts = torch.randn(E, N, K, T, D, generator=g), torch.randn(E, N, D, generator=g)
    query, labels = torch.randn(E, M, T, D, generator=g), torch.randint(0, N, (E, M), generator=g)
    episode_classes = torch.stack([torch.randperm(C, generator=g)[:N] for _ in range(E)])  # (E, N) of C classes
    texts = ClassTexts(torch.randn(C, D, generator=g), episode_classes)
    return support, prompts, query, labels, texts


def test_clip_fsar_every_parameter_gets_a_gradient():
    model = make("clip-fsar").train()
    support, prompts, query, labels, texts = episode()
    scores = model(support, prompts, query, class_texts=texts)
    loss, parts = model.loss(scores, labels)
    assert set(parts) == {"ce", "video_text"}
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_clip_fsar_prompt_modulates_supports_only():
    model = make("clip-fsar").eval()
    g = torch.Generator().manual_seed(1)
    enc = model.encode(torch.randn(3, T, D, generator=g))
    p1, p2 = torch.randn(3, D, generator=g), torch.randn(3, D, generator=g)
    assert model.query_prompt_mode == "none"
    assert model.fuse(enc, p1, "support")["fsar"].shape == (3, T, D)  # the prompt token is dropped
    assert not torch.allclose(model.fuse(enc, p1, "support")["fsar"], model.fuse(enc, p2, "support")["fsar"])
    torch.testing.assert_close(model.fuse(enc, p1, "query")["fsar"], model.fuse(enc, None, "query")["fsar"])
    with pytest.raises(ValueError, match="class prompts"):
        model.fuse(enc, None, "support")


def test_clip_fsar_eval_forward_equals_manual_composition():
    model = make("clip-fsar").eval()
    support, prompts, query, _, _ = episode()
    s_tok = model.fuse(model.encode(support.reshape(-1, T, D)), prompts[:, :, None].expand(E, N, K, D).reshape(-1, D),
                       "support")["fsar"].reshape(E, N, K, T, D)
    q_tok = model.fuse(model.encode(query.reshape(-1, T, D)), None, "query")["fsar"].reshape(E, M, T, D)
    manual = model.score({"fsar": q_tok}, {"fsar": s_tok})
    torch.testing.assert_close(model(support, prompts, query).logits, manual.logits, rtol=1e-5, atol=1e-5)


def test_clip_fsar_video_text_loss_targets_the_videos_classes():
    model = make("clip-fsar", fsar_text_weight=0.5, fsar_text_logits="clip-scale", ce_reduction="mean").train()
    support, prompts, query, labels, texts = episode()
    scores = model(support, prompts, query, class_texts=texts)
    vt = scores.video_text
    assert vt.support.shape == (E, N, K, C) and vt.query.shape == (E, M, C)
    videos = torch.cat([support.reshape(-1, T, D), query.reshape(-1, T, D)]).mean(1)
    logits = 100.0 * F.normalize(videos, dim=-1) @ F.normalize(texts.embeddings, dim=-1).T
    targets = torch.cat([texts.episode_classes[:, :, None].expand(E, N, K).reshape(-1),
                         texts.episode_classes.gather(1, labels).reshape(-1)])
    loss, parts = model.loss(scores, labels)
    assert parts["video_text"] == pytest.approx(float(F.cross_entropy(logits, targets)), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(parts["ce"] + 0.5 * parts["video_text"], rel=1e-5)


def test_clip_fsar_text_loss_needs_class_texts_in_training():
    support, prompts, query, labels, _ = episode()
    model = make("clip-fsar").train()
    with pytest.raises(ValueError, match="class_texts"):
        model.loss(model(support, prompts, query), labels)
    model.eval()  # evaluation has no training classes: cross-entropy only
    assert set(model.loss(model(support, prompts, query), labels)[1]) == {"ce"}
    unweighted = make("clip-fsar", fsar_text_weight=0.0).train()
    assert set(unweighted.loss(unweighted(support, prompts, query), labels)[1]) == {"ce"}


def test_clip_fsar_without_positions_has_no_position_parameter():
    names = {n for n, _ in make("clip-fsar", position_embedding=False).named_parameters()}
    assert not any("position" in n for n in names)
    assert any("position" in n for n, _ in make("clip-fsar").named_parameters())


@pytest.mark.parametrize("bidirectional", [True, False])
def test_otam_baseline_is_otam_on_raw_frames_to_mean_prototypes(bidirectional):
    model = make("otam", otam_bidirectional=bidirectional)
    assert isinstance(model, OTAMBaseline) and len(list(model.parameters())) == 0
    support, prompts, query, labels, _ = episode()
    scores = model(support, prompts, query)
    want = otam_distance(query, support.mean(2), bidirectional=bidirectional)
    torch.testing.assert_close(scores.logits, -want)
    assert set(scores.distances) == {"otam"} and scores.prompt_choice is None
    loss, parts = model.loss(scores, labels)
    assert set(parts) == {"ce"}



def test_clip_fsar_eval_fuse_of_a_video_does_not_depend_on_its_batch():
    model = make("clip-fsar").eval()
    g = torch.Generator().manual_seed(2)
    frames, prompts = torch.randn(5, T, D, generator=g), torch.randn(5, D, generator=g)
    for role in ("support", "query"):
        alone = model.fuse(model.encode(frames[3:4]), prompts[3:4], role)["fsar"]
        batched = model.fuse(model.encode(frames), prompts, role)["fsar"]
        torch.testing.assert_close(alone[0], batched[3], rtol=1e-5, atol=1e-5)


def test_clip_fsar_merge_before_averages_the_shots_before_the_transformer():
    """A 2-shot toy episode: with `fsar_merge_before` the prototype of a class is the transformer output of the mean
    of its two support videos (built by hand here), not the mean of the two outputs."""
    model = make("clip-fsar", fsar_merge_before=True).eval()
    after = make("clip-fsar").eval()  # the same weights (same seed), shots averaged after the transformer
    support, prompts, query, _, _ = episode()  # K = 2
    with torch.no_grad():
        merged = model(support, prompts, query).logits
        mean_frames = support.mean(2)  # (E, N, T, D): the class's shots averaged first
        protos = model.fuse({"frames": mean_frames.reshape(-1, T, D)}, prompts.reshape(-1, D), "support")["fsar"]
        q = model.fuse({"frames": query.reshape(-1, T, D)}, None, "query")["fsar"].reshape(E, M, T, D)
        want = -otam_distance(q, protos.reshape(E, N, T, D))
        torch.testing.assert_close(merged, want, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(merged, after(support, prompts, query).logits, atol=1e-3)
        one_shot = support[:, :, :1]  # with one shot, before and after are the same
        torch.testing.assert_close(model(one_shot, prompts, query).logits, after(one_shot, prompts, query).logits)
    assert model.merges_shots and not after.merges_shots


def test_clip_fsar_merge_before_is_evaluated_episode_by_episode():
    """The evaluator's per-video reuse cannot serve merged shots: it runs whole episodes, and gets what forward gets."""
    import numpy as np

    from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate

    model = make("clip-fsar", fsar_merge_before=True)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(40, 1, T, D, generator=g).numpy()
    labels = np.repeat(np.arange(8), 5)
    prompts = torch.randn(8, D, generator=g).numpy()
    names = [f"c{i}" for i in range(8)]
    cfg = EvalConfig(way=3, shot=2, episodes=30, batch_episodes=10, progress=False, keep_predictions=True)
    reused = evaluate(model, feats, labels, prompts, names, cfg)
    naive = evaluate(model, feats, labels, prompts, names, EvalConfig(**{**cfg.__dict__, "reuse": False}))
    assert torch.equal(reused.predictions, naive.predictions)


def test_clip_fsar_reference_text_logits_are_eps_cosines_times_a_learnable_scale():
    model = make("clip-fsar", fsar_text_weight=1.5).train()
    assert float(model.text_scale.detach()) == 1.0 and model.text_scale.requires_grad
    support, prompts, query, labels, texts = episode()
    with torch.no_grad():
        model.text_scale.fill_(2.5)
    vt = model(support, prompts, query, class_texts=texts).video_text
    video = query.mean(2)  # (E, M, D)
    want = (video @ texts.embeddings.T) / (video.norm(dim=-1)[..., None] * texts.embeddings.norm(dim=-1) + 0.01)
    torch.testing.assert_close(vt.query, 2.5 * want)
    scores = model(support, prompts, query, class_texts=texts)
    loss, parts = model.loss(scores, labels)
    # ce_reduction=sum: the video-text CE is summed over each episode's N·K + M videos, then averaged over episodes
    logits = torch.cat([scores.video_text.support.reshape(E, -1, C), scores.video_text.query], 1)
    targets = torch.cat([texts.episode_classes[:, :, None].expand(E, N, K).reshape(E, -1),
                         texts.episode_classes.gather(1, labels)], 1)
    want_vt = F.cross_entropy(logits.reshape(-1, C), targets.reshape(-1), reduction="sum") / E
    assert parts["video_text"] == pytest.approx(float(want_vt.detach()), rel=1e-5)
    loss.backward()
    assert model.text_scale.grad is not None and float(model.text_scale.grad.abs()) > 0
    assert not hasattr(make("clip-fsar", fsar_text_logits="clip-scale"), "text_scale")
