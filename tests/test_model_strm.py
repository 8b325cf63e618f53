"""`strm` under `--preset reference-strm` is the released STRM code (`CNN_STRM` of Anirudh257/strm, model.py and
run.py) on frame features, written out here by hand in float64 from its facts: `MLP_Mix_Enrich` (0.1-scaled
sinusoidal positions, a token MLP over the T frames and a channel MLP, each with its residual), TRX's temporal
cross-transformers on the enriched frames (tests/test_model_trx.py's hand-written one), `DistanceLoss` on the frames
(ordered tuples, `ReLU(clsW ·)` to D/2, per class the Euclidean distance of each query tuple to the nearest support
tuple of all shots, averaged over the query's tuples, negated), logits `frame + 0.1 · distance`, loss
`Σ_queries CE(frame) + 0.1 · Σ_queries CE(distance)` per episode (utils.loss with one sample) / tasks per batch,
accumulated. The 4×4 patch attention is left out (no spatial maps in a store; the module docstring says why).
Dropout is set to 0 so that the two computations see the same network."""

import pytest
import torch
import torch.nn.functional as F

from mdmf import ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset
from test_model_trx import assert_same_gradients, authors_cross_transformer, authors_positions, episode_inputs

E, M, T, D = 2, 4, 8, 16


def lin(x, layer):
    return x @ layer.weight.T + layer.bias


def authors_enrich(x, enrich):
    """MLP_Mix_Enrich.forward on x (B, T, D)."""
    x = x + authors_positions(int(T * 1.5), D)[:T]
    tok, bot = enrich.token_mlp, enrich.channel_mlp
    out = lin(torch.relu(lin(x.permute(0, 2, 1), tok[0])), tok[2]).permute(0, 2, 1) + x
    return lin(torch.relu(lin(out, bot[0])), bot[2]) + out


def authors_distance(branch, size, support, labels, queries, way):
    """DistanceLoss.forward: support (S, T, D), labels (S,), queries (Q, T, D) -> logits (Q, way)."""
    from itertools import combinations

    tuples = [torch.tensor(c) for c in combinations(range(T), size)]
    s = torch.stack([support[:, p].reshape(support.shape[0], -1) for p in tuples], dim=-2)
    q = torch.stack([queries[:, p].reshape(queries.shape[0], -1) for p in tuples], dim=-2)
    q_embed = torch.relu(lin(q.reshape(-1, D * size), branch.proj))  # (Q·P, D/2)
    columns = []
    for c in range(way):
        s_embed = torch.relu(lin(s[labels == c].reshape(-1, D * size), branch.proj))  # (K·P, D/2)
        dist = ((q_embed[:, None] - s_embed[None]) ** 2).sum(-1).sqrt()  # Euclidean, as torch.cdist
        columns.append(-dist.min(dim=1)[0].reshape(queries.shape[0], len(tuples)).mean(dim=1))
    return torch.stack(columns, dim=1)


def authors_strm(model, support, query, sizes):
    """support (N, K, T, D), query (M, T, D) -> (frame logits, distance logits), each (M, N)."""
    n, k = support.shape[:2]
    labels = torch.arange(n).repeat_interleave(k)
    flat = support.reshape(n * k, T, D)
    patch = torch.stack([authors_distance(b, s, flat, labels, query, n)
                         for s, b in zip(sizes, model.distance_branch)], -1).mean(-1)
    s_fr, q_fr = authors_enrich(flat, model.enrich), authors_enrich(query, model.enrich)
    frame = torch.stack([authors_cross_transformer(t, s, s_fr, labels, q_fr, n)
                         for s, t in zip(sizes, model.transformers)], -1).mean(-1)
    return frame, patch


@pytest.mark.parametrize("seed,way,shot,learn,sizes", [(0, 5, 1, False, None), (1, 3, 2, False, None),
                                                       (2, 4, 3, True, None), (3, 3, 2, True, [2, 3])])
def test_reference_preset_is_the_released_strm(seed, way, shot, learn, sizes):
    preset = load_preset("reference-strm").model
    overrides = {"dim": D, "frames": T, "trx_dropout": 0.0, "strm_dropout": 0.0, "strm_learn_distance": learn}
    cfg = ModelConfig.from_dict({**preset, **overrides, **({"trx_cardinalities": sizes} if sizes else {})})
    assert (preset["trx_cardinalities"], preset["strm_distance_weight"], preset["ce_reduction"]) == ([2], 0.1, "sum")
    torch.manual_seed(seed)
    model = build_model(cfg).double().train()
    assert all(p.requires_grad == learn for p in model.distance_branch.parameters())
    support, prompts, query, labels = episode_inputs(40 + seed, way, shot)

    scores = model(support, prompts, query)
    ours, parts = model.loss(scores, labels)
    theirs = 0
    for e in range(E):
        frame, patch = authors_strm(model, support[e], query[e], cfg.trx_cardinalities)
        torch.testing.assert_close(scores.logits[e], frame + 0.1 * patch, rtol=1e-12, atol=1e-11)
        task = F.cross_entropy(frame, labels[e], reduction="sum") + 0.1 * F.cross_entropy(patch, labels[e],
                                                                                          reduction="sum")
        theirs = theirs + task / E  # / tasks_per_batch, accumulated over the step
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert set(parts) == {"ce", "trx", "distance"}
    assert_same_gradients(ours, theirs, [support, query, *(p for p in model.parameters() if p.requires_grad)])


def test_the_frozen_projection_is_saved_and_not_trained():
    model = build_model(ModelConfig(name="strm", dim=D, frames=T, trx_dim=24))
    keys = [k for k in model.state_dict() if k.startswith("distance_branch")]
    assert keys == ["distance_branch.0.proj.weight", "distance_branch.0.proj.bias",
                    "distance_branch.1.proj.weight", "distance_branch.1.proj.bias"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("distance_branch") for n in trainable) and "enrich.token_mlp.0.weight" in trainable
