"""HyRSM and HyRSM++: under `--preset reference-hyrsm` / `reference-hyrsm++` the logits, the training loss and the
gradients equal the computation of the CLIP-FSAR codebase's CNN_HyRSM_1shot / _5shot and CNN_HyRSM_plusplus_1shot /
_5shot with their train loop's USE_LOCAL loss, written out here by hand in float64 from plain torch ops (the
authors' layout: supports in any class order, one set per query, `(Q, S, T, T)` frame distances). Dropout is set to
0 so that both computations see the same network."""

import math

import pytest
import torch
import torch.nn.functional as F

from mdmf import ClassTexts, ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset
from reference_check import assert_same_computation, shuffled_supports

N, M, T, D, C = 3, 5, 8, 32, 7
NO_DROPOUT = {"hyrsm_position_dropout": 0.0, "hyrsm_intra_dropout": 0.0, "hyrsm_inter_attn_dropout": 0.0,
              "hyrsm_inter_dropout": 0.0}


def reference_model(preset="reference-hyrsm", **overrides):
    cfg = {**load_preset(preset).model, "dim": D, "train_classes": C, **NO_DROPOUT, **overrides}
    return build_model(ModelConfig.from_dict(cfg))


def authors_positions(x, a, b):
    """PositionalEncoder: the table filled by its loop (math.sin / math.cos into a float32 tensor)."""
    pe = torch.zeros(20, D)
    for pos in range(20):
        for i in range(0, D, 2):
            pe[pos, i] = math.sin(pos / (10000 ** ((2 * i) / D)))
            pe[pos, i + 1] = math.cos(pos / (10000 ** ((2 * (i + 1)) / D)))
    return x * math.sqrt(D / a) + b * pe[None, : x.shape[1]].double()


def authors_intra(x, block, heads=8):
    """relu(PreNormattention(Attention)): to_qkv, 'b n (h d) -> b h n d', dim_head^-0.5, to_out, + x."""
    h = F.layer_norm(x, (D,), block.norm.weight, block.norm.bias, block.norm.eps)
    q, k, v = (t.reshape(x.shape[0], T, heads, D // heads).permute(0, 2, 1, 3)
               for t in (h @ block.fn.to_qkv.weight.T).chunk(3, dim=-1))
    attn = torch.softmax(q @ k.transpose(-1, -2) * (D // heads) ** -0.5, dim=-1)
    out = (attn @ v).permute(0, 2, 1, 3).reshape(x.shape[0], T, D)
    return F.relu(out @ block.fn.to_out[0].weight.T + block.fn.to_out[0].bias + x)


def authors_inter(x, mha, heads=8):
    """relu(MultiHeadAttention(x, x, x)) on (Q, S+1, D): heads as (n·b) batches, bmm / √d_k, fc, LN(out + x)."""
    Q, L, _ = x.shape
    d_k = D // heads
    split = lambda w: (x @ w.weight.T).view(Q, L, heads, d_k).permute(2, 0, 1, 3).reshape(-1, L, d_k)  # noqa: E731
    q, k, v = split(mha.w_qs), split(mha.w_ks), split(mha.w_vs)
    attn = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / (d_k**0.5), dim=2)
    out = torch.bmm(attn, v).view(heads, Q, L, d_k).permute(1, 2, 0, 3).reshape(Q, L, -1)
    out = out @ mha.fc.weight.T + mha.fc.bias
    return F.relu(F.layer_norm(out + x, (D,), mha.layer_norm.weight, mha.layer_norm.bias, mha.layer_norm.eps))


def authors_temporal(features, window, balance, coefficient):
    """loss_temporal_regular's term for one of (support, query): features (B, T, D)."""
    reg, label = torch.zeros(T, T), torch.zeros(T, T)
    for i in range(T):
        for j in range(T):
            if abs(i - j) <= window:
                reg[i, j], label[i, j] = 1.0 / (pow(i - j, 2) + 1.0), 1.0
            else:
                reg[i, j] = 1.0 - torch.exp(torch.tensor(-pow(abs(i - j) - window, 2) / balance))
    reg, label = reg.double(), label.double()
    x = F.normalize(features, dim=2)
    d = 1 - x @ x.permute(0, 2, 1)
    return torch.mean(d * label * reg + coefficient * (1 - label) * F.relu(reg - d))


def authors_episode(model, support, support_labels, query, labels, real_support, real_query, five_shot):
    """One episode of CNN_HyRSM(_plusplus)_{1,5}shot and its train-loop loss -> (logits (M, N), loss)."""
    c = model.config
    s = authors_intra(authors_positions(support, c.hyrsm_position_a, c.hyrsm_position_b), model.temporal_atte_before)
    t = authors_intra(authors_positions(query, c.hyrsm_position_a, c.hyrsm_position_b), model.temporal_atte_before)
    class_logits = torch.cat([s, t], 0) @ model.classification_layer.weight.T + model.classification_layer.bias
    class_logits = class_logits.reshape(-1, C)
    unique = torch.unique(support_labels)
    if five_shot:  # class prototypes first, in unique-label order
        s = torch.stack([s[support_labels == u].mean(0) for u in unique])
    S = s.shape[0]
    ext = s.unsqueeze(0).repeat(M, 1, 1, 1)  # (Q, S, T, D)
    feature_in = authors_inter(torch.cat([ext.mean(2), t.unsqueeze(1).mean(2)], 1), model.temporal_atte)
    conv = model.layer2[0]
    sup = torch.cat([ext, feature_in[:, :-1, :].unsqueeze(2).repeat(1, 1, T, 1)], 3).reshape(-1, T, 2 * D)
    sup = F.conv1d(sup.permute(0, 2, 1), conv.weight, conv.bias).permute(0, 2, 1).reshape(M, S, T, D)
    tgt = torch.cat([t, feature_in[:, -1, :].unsqueeze(1).repeat(1, T, 1)], 2)
    tgt = F.conv1d(tgt.permute(0, 2, 1), conv.weight, conv.bias).permute(0, 2, 1)  # (Q, T, D)
    flat = sup.reshape(M, S * T, D)
    dists = 1 - torch.matmul(F.normalize(flat, dim=2), F.normalize(tgt, dim=2).permute(0, 2, 1)).reshape(M, S, T, T)
    cum = dists.min(3)[0].sum(2) + dists.min(2)[0].sum(2)  # (Q, S)
    index = unique if five_shot else support_labels
    logits = -torch.stack([cum[:, index == u].mean(1) for u in unique], 1)
    frame_targets = torch.cat([real_support, real_query], 0).unsqueeze(1).repeat(1, T).reshape(-1)
    # train_net_few_shot, USE_CLASSIFICATION and USE_LOCAL (and TEMPORAL_LOSS_WEIGHT for HyRSM++): the bracket before
    # its division by the constant BATCH_SIZE
    loss = F.cross_entropy(logits, labels) + c.hyrsm_class_weight * F.cross_entropy(class_logits, frame_targets)
    if c.hyrsm_temporal_weight:
        w, b, k = c.hyrsm_temporal_window, c.hyrsm_temporal_balance, c.hyrsm_temporal_coefficient
        loss = loss + c.hyrsm_temporal_weight * (authors_temporal(sup.reshape(-1, T, D), w, b, k)
                                                 + authors_temporal(tgt, w, b, k))
    return logits, loss


CASES = [  # (preset, shots, overrides, the authors' head: 5-shot form or 1-shot form)
    ("reference-hyrsm", 1, {}, False), ("reference-hyrsm", 1, {}, True), ("reference-hyrsm", 3, {}, True),
    ("reference-hyrsm", 2, {"hyrsm_shots": "videos"}, False),
    ("reference-hyrsm++", 1, {}, False), ("reference-hyrsm++", 3, {}, True),
    ("reference-hyrsm++", 2, {"hyrsm_shots": "videos", "hyrsm_temporal_window": 3, "hyrsm_temporal_balance": 23.0,
                              "hyrsm_temporal_coefficient": 10.0}, False),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("preset,K,overrides,five_shot", CASES)
def test_reference_presets_equal_the_authors_computation(preset, K, overrides, five_shot, seed):
    E = 2
    torch.manual_seed(seed)
    model = reference_model(preset, **overrides).double().train()
    g = torch.Generator().manual_seed(100 + seed)
    support = torch.randn(E, N, K, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    query = torch.randn(E, M, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, N, (E, M), generator=g)
    classes = torch.stack([torch.randperm(C, generator=g)[:N] for _ in range(E)])  # (E, N) of the C train classes
    texts = ClassTexts(torch.randn(C, D, generator=g, dtype=torch.float64), classes)

    scores = model(support, torch.zeros(E, N, D, dtype=torch.float64), query, class_texts=texts)
    ours, parts = model.loss(scores, labels)
    assert parts["frame_class"] > 0 and (("temporal" in parts) == (model.config.hyrsm_temporal_weight > 0))
    theirs_logits, theirs = [], 0.0
    for e in range(E):
        flat, flat_labels = shuffled_supports(support[e], g)  # the authors' supports come in any order
        logits, loss = authors_episode(model, flat, flat_labels, query[e], labels[e], classes[e][flat_labels],
                                       classes[e][labels[e]], five_shot)
        theirs_logits.append(logits)
        theirs = theirs + loss / E  # mdmf averages the step's episodes
    assert_same_computation(scores.logits, torch.stack(theirs_logits), ours, theirs, [support, query,
                                                                                      *model.parameters()])


def test_mean_hausdorff_is_the_sum_over_frames_divided_by_t():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    support, query = torch.randn(1, N, 2, T, D, generator=g), torch.randn(1, M, T, D, generator=g)
    summed = reference_model().eval()(support, torch.zeros(1, N, D), query).logits
    torch.manual_seed(0)
    averaged = reference_model(hyrsm_set_reduction="mean").eval()(support, torch.zeros(1, N, D), query).logits
    torch.testing.assert_close(averaged, summed / T)


def test_the_frame_classifier_needs_the_training_classes():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    support, query = torch.randn(1, N, 1, T, D, generator=g), torch.randn(1, M, T, D, generator=g)
    labels = torch.zeros(1, M, dtype=torch.long)
    with pytest.raises(ValueError, match="episodes' training classes"):  # a classifier, but no classes given
        reference_model().train().loss(reference_model().train()(support, torch.zeros(1, N, D), query), labels)
    plain = reference_model(train_classes=0).train()  # no training classes known: no classifier, no frame term
    assert plain.classification_layer is None
    _, parts = plain.loss(plain(support, torch.zeros(1, N, D), query), labels)
    assert set(parts) == {"ce"}
    with pytest.raises(ValueError, match="hyrsm_heads"):
        ModelConfig(name="hyrsm", dim=D, hyrsm_heads=5)


def test_the_parameters_carry_the_authors_names():
    keys = set(reference_model().state_dict())
    assert keys >= {"pe.pe", "temporal_atte_before.norm.weight", "temporal_atte_before.fn.to_qkv.weight",
                    "temporal_atte_before.fn.to_out.0.weight", "temporal_atte.w_qs.weight", "temporal_atte.fc.weight",
                    "temporal_atte.layer_norm.weight", "layer2.0.weight", "layer2.0.bias",
                    "classification_layer.weight"}
    assert reference_model().state_dict()["pe.pe"].shape == (1, 20, D)
    assert reference_model().state_dict()["layer2.0.weight"].shape == (D, 2 * D, 1)


@pytest.mark.parametrize("shots,five_shot", [("prototype", True), ("videos", False)])
def test_uneven_shots_are_the_authors_computation(shots, five_shot):
    """`predict` with classes of 2, 1 and 3 shots: the authors' code takes any number of support videos per class
    (a mean over the class's indices), and so does either form here."""
    torch.manual_seed(0)
    model = reference_model(hyrsm_shots=shots).double().eval()
    g = torch.Generator().manual_seed(6)
    support = [torch.randn(k, T, D, generator=g, dtype=torch.float64) for k in (2, 1, 3)]
    query = torch.randn(1, M, T, D, generator=g, dtype=torch.float64)
    logits = model(support, torch.zeros(1, N, D, dtype=torch.float64), query).logits[0]
    labels = torch.cat([torch.full((len(s),), n) for n, s in enumerate(support)])
    theirs, _ = authors_episode(model, torch.cat(support), labels, query[0], torch.zeros(M, dtype=torch.long),
                                torch.zeros(len(labels), dtype=torch.long), torch.zeros(M, dtype=torch.long), five_shot)
    torch.testing.assert_close(logits, theirs, rtol=1e-10, atol=1e-10)
