"""`trx` under `--preset reference-trx` is the CLIP-FSAR codebase's `CNN_TRX` with its training loss, written out
here by hand in float64 from the facts of that code (`TemporalCrossTransformer`): per cardinality ω in [2, 3] the
frames plus `0.1·[sin, cos]` positions (table built in float32), every ordered ω-tuple concatenated, keys
`LayerNorm(k_linear(·))`, values `v_linear(·)`; for each class, one softmax per query tuple over all the class's
support tuples of all its shots (scale 1/√1152), the prototype the attended support values summed over the shots,
distance `‖query values − prototype‖²` over all tuples / their number; logits minus the distance, averaged over
the cardinalities; loss `F.cross_entropy` (averaged over the queries) / episodes per step, accumulated. Dropout is
set to 0 so that the two computations see the same network."""

import math
from itertools import combinations

import pytest
import torch
import torch.nn.functional as F

from mdmf import ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset

E, M, T, D = 2, 4, 8, 16


def authors_positions(length, dim):
    position = torch.arange(0, length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * -(math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * div_term) * 0.1
    pe[:, 1::2] = torch.cos(position * div_term) * 0.1
    return pe.double()


def authors_cross_transformer(t, size, support, labels, queries, way):
    """One `TemporalCrossTransformer.forward`: support (S, T, D), labels (S,), queries (Q, T, D) -> logits (Q, way)."""
    pe = authors_positions(int(T * 1.5), D)[:T]
    support, queries = support + pe, queries + pe
    tuples = [torch.tensor(c) for c in combinations(range(T), size)]
    s = torch.stack([support[:, p].reshape(support.shape[0], -1) for p in tuples], dim=-2)
    q = torch.stack([queries[:, p].reshape(queries.shape[0], -1) for p in tuples], dim=-2)
    lin = lambda x, layer: x @ layer.weight.T + layer.bias  # noqa: E731
    norm = lambda x: F.layer_norm(x, x.shape[-1:], t.norm_k.weight, t.norm_k.bias, t.norm_k.eps)  # noqa: E731
    s_k, q_k, s_v, q_v = norm(lin(s, t.k_linear)), norm(lin(q, t.k_linear)), lin(s, t.v_linear), lin(q, t.v_linear)
    out_dim, n_tuples = s_k.shape[-1], len(tuples)
    columns = []
    for c in range(way):
        class_k, class_v = s_k[labels == c], s_v[labels == c]  # (K, P, d)
        scores = torch.matmul(q_k.unsqueeze(1), class_k.transpose(-2, -1)) / math.sqrt(out_dim)  # (Q, K, P, P)
        scores = scores.permute(0, 2, 1, 3).reshape(q.shape[0], n_tuples, -1)
        scores = torch.softmax(scores, dim=-1).reshape(q.shape[0], n_tuples, -1, n_tuples).permute(0, 2, 1, 3)
        prototype = torch.matmul(scores, class_v).sum(1)  # (Q, P, d)
        columns.append(-torch.norm(q_v - prototype, dim=[-2, -1]) ** 2 / n_tuples)
    return torch.stack(columns, dim=1)


def authors_trx_logits(model, support, query):
    """support (N, K, T, D), query (M, T, D) -> CNN_TRX's logits (M, N): the cardinalities' logits averaged."""
    n, k = support.shape[:2]
    labels = torch.arange(n).repeat_interleave(k)
    flat = support.reshape(n * k, T, D)
    logits = [authors_cross_transformer(t, size, flat, labels, query, n)
              for size, t in zip((2, 3), model.transformers)]
    return torch.stack(logits, dim=-1).mean(-1)


def episode_inputs(seed, way, shot):
    """float64 support (E, way, shot, T, D) and query (E, M, T, D) with gradients, prompts, labels (E, M)."""
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(E, way, shot, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    query = torch.randn(E, M, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    prompts = torch.randn(E, way, D, generator=g, dtype=torch.float64)
    return support, prompts, query, torch.randint(0, way, (E, M), generator=g)


def assert_same_gradients(ours, theirs, leaves):
    for a, b in zip(torch.autograd.grad(ours, leaves), torch.autograd.grad(theirs, leaves)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed,way,shot", [(0, 5, 1), (1, 3, 2), (2, 4, 3)])
def test_reference_preset_is_cnn_trx(seed, way, shot):
    preset = load_preset("reference-trx").model
    cfg = ModelConfig.from_dict({**preset, "dim": D, "frames": T, "trx_dropout": 0.0})
    assert (cfg.trx_cardinalities, cfg.trx_dim, cfg.ce_reduction, preset["trx_dropout"]) == ((2, 3), 1152, "mean", 0.1)
    torch.manual_seed(seed)
    model = build_model(cfg).double().train()
    support, prompts, query, labels = episode_inputs(30 + seed, way, shot)

    scores = model(support, prompts, query)
    ours, _ = model.loss(scores, labels)
    theirs = 0
    for e in range(E):
        logits = authors_trx_logits(model, support[e], query[e])
        torch.testing.assert_close(scores.logits[e], logits, rtol=1e-12, atol=1e-11)
        theirs = theirs + F.cross_entropy(logits, labels[e]) / E
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert_same_gradients(ours, theirs, [support, query, *model.parameters()])


def test_positions_dropout_acts_in_training_only_and_the_tables_are_not_saved():
    model = build_model(ModelConfig(name="trx", dim=D, frames=T, trx_dim=24, trx_dropout=0.5))
    frames = torch.randn(3, T, D)
    model.train()
    a, b = model.fuse(model.encode(frames), None, "query"), model.fuse(model.encode(frames), None, "query")
    assert not torch.equal(a["k2"], b["k2"])
    model.eval()
    torch.testing.assert_close(model.fuse(model.encode(frames), None, "query")["v3"],
                               model.fuse(model.encode(frames), None, "support")["v3"], rtol=0, atol=0)
    assert model.fuse(model.encode(frames), None, "query")["k3"].shape == (3, 56, 24)
    assert not any("pe" in k.split(".")[-1] or "tuples" in k for k in model.state_dict())
