"""CrossTransformer: under `--preset reference-crosstransformer` its logits, loss and gradients equal the computation
of the CLIP-FSAR codebase's CNN_CrossTransformer, written out here by hand in float64 from plain torch ops; its
evaluation paths agree; it trains and evaluates on the toy store."""

import pytest
import torch
import torch.nn.functional as F

from mdmf import ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset
from reference_check import assert_same_computation, shuffled_supports

E, N, K, M, T, D = 2, 3, 2, 5, 8, 32


def reference_model(**overrides):
    preset = load_preset("reference-crosstransformer").model
    return build_model(ModelConfig.from_dict({**preset, "dim": D, **overrides}))


def authors_logits(model, support, support_labels, query):
    """One episode as CNN_CrossTransformer computes it. support `(N·K, T, D)` in any class order with
    support_labels `(N·K,)`, query `(M, T, D)` -> `(M, N)`."""
    hidden = model.key_head.weight.shape[0]
    conv = lambda x, head: F.conv1d(x.transpose(1, 2), head.weight)  # (B, T, D) -> (B, H, T)  # noqa: E731
    by_class = torch.cat([support[support_labels == c] for c in torch.unique(support_labels)])  # class order
    q = conv(query, model.query_head)  # (M, H, T)
    s_key = conv(by_class, model.key_head).reshape(N, K, hidden, T).permute(0, 2, 3, 1).reshape(N, hidden, T * K)
    s_value = conv(by_class, model.value_head).reshape(N, K, hidden, T).permute(0, 2, 3, 1).reshape(N, hidden, T * K)
    logits = torch.empty(M, N, dtype=support.dtype)
    q_value = conv(query, model.value_head).transpose(1, 2)  # (M, T, H)
    for m in range(M):
        for n in range(N):
            attn = torch.softmax((q[m].T @ s_key[n]) * hidden ** -0.5, dim=-1)  # (T, K·T): each query frame
            aligned = attn @ s_value[n].T  # (T, H)
            a = aligned / aligned.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            b = q_value[m] / q_value[m].norm(dim=-1, keepdim=True).clamp_min(1e-12)
            logits[m, n] = (a.reshape(-1) * b.reshape(-1)).sum() / 8  # the authors' hard-coded 8 frames
    return logits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_preset_equals_the_authors_computation(seed):
    torch.manual_seed(seed)
    model = reference_model().double().train()
    g = torch.Generator().manual_seed(100 + seed)
    support = torch.randn(E, N, K, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    query = torch.randn(E, M, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    prompts = torch.randn(E, N, D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, N, (E, M), generator=g)

    scores = model(support, prompts, query)
    ours, _ = model.loss(scores, labels)
    theirs_logits, theirs = [], 0.0
    for e in range(E):
        # the authors' episodes come in any class order: shuffle the supports, keep their labels
        logits = authors_logits(model, *shuffled_supports(support[e], g), query[e])
        theirs_logits.append(logits)
        # their train loop: F.cross_entropy (mean over the queries), divided by a constant (the GPU count) that
        # only scales the step; mdmf averages the step's episodes instead
        theirs = theirs + F.cross_entropy(logits, labels[e]) / E
    assert_same_computation(scores.logits, torch.stack(theirs_logits), ours, theirs, [support, query,
                                                                                      *model.parameters()])


def test_paper_distance_is_minus_the_mean_squared_distance():
    torch.manual_seed(0)
    model = reference_model(crosstransformer_distance="sq-euclidean").double().eval()
    g = torch.Generator().manual_seed(5)
    support = torch.randn(1, N, K, T, D, generator=g, dtype=torch.float64)
    query = torch.randn(1, M, T, D, generator=g, dtype=torch.float64)
    scores = model(support, torch.zeros(1, N, D, dtype=torch.float64), query)
    wq, wv = model.key_head.weight[:, :, 0], model.value_head.weight[:, :, 0]
    for m in range(M):
        for n in range(N):
            keys, values = support[0, n].reshape(K * T, D) @ wq.T, support[0, n].reshape(K * T, D) @ wv.T
            aligned = torch.softmax(query[0, m] @ wq.T @ keys.T / wq.shape[0] ** 0.5, -1) @ values  # (T, H)
            want = -((aligned - query[0, m] @ wv.T) ** 2).sum(-1).mean()
            torch.testing.assert_close(scores.logits[0, m, n], want, rtol=1e-10, atol=1e-10)


def test_width_comes_from_the_config_and_the_heads_are_shared():
    model = reference_model(crosstransformer_hidden=48)
    assert model.key_head.weight.shape == (48, D, 1) and model.query_head is model.key_head
    assert set(model.state_dict()) == {"key_head.weight", "query_head.weight", "value_head.weight"}
    with pytest.raises(ValueError, match="crosstransformer_hidden"):
        ModelConfig(name="crosstransformer", dim=D, crosstransformer_hidden=0)



def test_uneven_shots_score_each_class_from_its_own_frames():
    """`predict` with classes of 2, 1 and 3 shots: each class's logit is the authors' formula over its own K_n·T
    frames."""
    torch.manual_seed(0)
    model = reference_model(crosstransformer_hidden=16).double().eval()
    g = torch.Generator().manual_seed(6)
    support = [torch.randn(k, T, D, generator=g, dtype=torch.float64) for k in (2, 1, 3)]
    query = torch.randn(1, M, T, D, generator=g, dtype=torch.float64)
    logits = model(support, torch.zeros(1, N, D, dtype=torch.float64), query).logits[0]
    wk, wv = model.key_head.weight[:, :, 0], model.value_head.weight[:, :, 0]
    for n, shots in enumerate(support):
        frames = shots.reshape(-1, D)  # (K_n·T, D)
        for m in range(M):
            attn = torch.softmax(query[0, m] @ wk.T @ (frames @ wk.T).T / wk.shape[0] ** 0.5, -1)
            aligned, value = attn @ (frames @ wv.T), query[0, m] @ wv.T  # (T, H) each
            want = F.cosine_similarity(aligned, value, dim=-1, eps=1e-12).sum() / T
            torch.testing.assert_close(logits[m, n], want, rtol=1e-10, atol=1e-10)


def test_the_frame_order_is_invisible_to_it():
    """No positions and a sum over query frames of attention over a set of support frames: shuffling the frames of
    every video leaves the logits unchanged (why it cannot tell the toy set's reversed motions apart, docs HEADS.md)."""
    torch.manual_seed(0)
    model = reference_model(crosstransformer_hidden=16).double().eval()
    g = torch.Generator().manual_seed(8)
    support = torch.randn(1, N, K, T, D, generator=g, dtype=torch.float64)
    query = torch.randn(1, M, T, D, generator=g, dtype=torch.float64)
    prompts = torch.zeros(1, N, D, dtype=torch.float64)
    shuffled = model(support[..., torch.randperm(T, generator=g), :], prompts,
                     query[..., torch.randperm(T, generator=g), :]).logits
    torch.testing.assert_close(shuffled, model(support, prompts, query).logits, rtol=1e-12, atol=1e-12)
