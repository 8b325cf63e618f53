"""With `--preset reference`, an MDMF head's training loss and its gradients equal the authors' computation, written
out here by hand from plain torch ops in float64 (the recipe of METHOD §4–§6 and the issue's table): LTCE as two
plain convolutions, GTCE as the causal TCN, the authors' transformer (shared LayerNorm, bias-free projections, no
LayerNorm before the FF) without position embedding, class prototypes after the transformer, OTAM both ways with the
0.01 cosine, the first frame token as text token, the text-only up->down distillation with `>=` ties, and the CE
summed over the episode's queries. Dropout is set to 0 so that the two computations see the same network.

The `clip-fsar-*` presets and `reference-clip-fsar` likewise equal the authors' `CNN_OTAM_CLIPFSAR` head with its
training loss: one temporal transformer of their block applied to the features as they are (no position embedding), the
class text feature appended to each support video (MERGE_BEFORE: a class's videos and texts averaged first), OTAM
both ways with the 0.01 cosine, and `(CE(logits) + w · CE(video-text logits)) / episodes per step`, each CE averaged
(F.cross_entropy's default), the video-text logits `cos_0.01(mean frame, every train class text) × scale`."""

import pytest
import torch
import torch.nn.functional as F

from mdmf import ClassTexts, ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset

N, K, M, T, D, HEADS = 3, 2, 5, 8, 32, 4


def cos_eps(x, y):
    """The authors' cosine: x·y / (‖x‖‖y‖ + 0.01), every row of x against every row of y."""
    return (x @ y.T) / (x.norm(dim=-1)[:, None] * y.norm(dim=-1)[None, :] + 0.01)


def otam_one_way(cost, lam=0.5):
    """The authors' OTAM recurrence, one cell at a time: cost (T, S) -> scalar."""
    rows, width = cost.shape
    p = F.pad(cost, (1, 1))
    smin = lambda *v: -lam * torch.logsumexp(torch.stack(v) / -lam, 0)  # noqa: E731
    c = [[None] * (width + 2) for _ in range(rows)]
    c[0][0] = p.new_zeros(())
    for m in range(1, width + 2):
        c[0][m] = p[0, m] + c[0][m - 1]
    for l in range(1, rows):
        c[l][0] = p.new_zeros(())
        c[l][1] = p[l, 1] + smin(c[l - 1][0], c[l - 1][1], c[l][0])
        for m in range(2, width + 1):
            c[l][m] = p[l, m] + smin(c[l - 1][m - 1], c[l][m - 1])
        c[l][width + 1] = p[l, width + 1] + smin(c[l - 1][width], c[l - 1][width + 1], c[l][width])
    return c[rows - 1][width + 1]


def otam(query, protos):
    """query (M, T, D), protos (N, T, D) -> (M, N): OTAM(M) + OTAM(Mᵀ), M = 1 - cos_eps."""
    out = torch.stack([torch.stack([otam_one_way(1 - cos_eps(q, u)) + otam_one_way((1 - cos_eps(q, u)).T)
                                    for u in protos]) for q in query])
    return out


def authors_layer(q, kv, block, n_heads=HEADS):
    ln = lambda t: F.layer_norm(t, t.shape[-1:], block.norm.weight, block.norm.bias, block.norm.eps)  # noqa: E731
    heads = lambda t: t.reshape(t.shape[0], t.shape[1], n_heads, -1).transpose(1, 2)  # noqa: E731
    Q, Kk, V = heads(ln(q) @ block.to_q.weight.T), heads(ln(kv) @ block.to_k.weight.T), heads(ln(kv) @ block.to_v.weight.T)
    attn = torch.softmax(Q @ Kk.transpose(-1, -2) * (D // n_heads) ** -0.5, -1)
    x = (attn @ V).transpose(1, 2).reshape(q.shape) @ block.to_out[0].weight.T + block.to_out[0].bias + q
    ff = F.gelu(x @ block.ff[0].weight.T + block.ff[0].bias) @ block.ff[3].weight.T + block.ff[3].bias
    return ff + x


def authors_mmfe(prompts, frames, context, encoder):
    q = torch.cat([prompts[:, None], context], 1)
    kv = torch.cat([prompts[:, None], frames], 1)
    return authors_layer(q, kv, encoder.blocks[0])


def authors_ltce(x, ltce):
    convs = [m for m in ltce.net if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 2 and len(ltce.net) == 2  # the reference variant: no ReLU, no BN
    h = x.transpose(1, 2)
    for conv in convs:
        h = F.conv1d(h, conv.weight, conv.bias, padding=1)
    return h.transpose(1, 2)


def authors_gtce(x, gtce):
    h = x.transpose(1, 2)
    for block, dilation in zip(gtce.tcn, (1, 2, 4)):
        pad = 2 * dilation
        a = F.relu(F.conv1d(F.pad(h, (pad, 0)), block.conv1.weight, block.conv1.bias, dilation=dilation))
        a = F.relu(F.conv1d(F.pad(a, (pad, 0)), block.conv2.weight, block.conv2.bias, dilation=dilation))
        h = F.relu(h + a)
    return h[:, :, -1][:, None, :].repeat(1, T, 1) + x


def authors_loss(model, support, prompts, query, labels, query_prompt_class):
    """support (N, K, T, D), prompts (N, D), query (M, T, D), labels (M,), the PPS draw (M,) -> the episode's loss."""
    s = support.reshape(N * K, T, D)
    s_prompts = prompts.repeat_interleave(K, 0)
    q_prompts = prompts[query_prompt_class]
    views = {}
    for name, context in (("up", lambda x: authors_ltce(x, model.contexts["local"])),
                          ("down", lambda x: authors_gtce(x, model.contexts["global"]))):
        encoder = model.fusion["local" if name == "up" else "global"]
        sup = authors_mmfe(s_prompts, s, context(s), encoder).reshape(N, K, T + 1, D).mean(1)  # prototypes
        tgt = authors_mmfe(q_prompts, query, context(query), encoder)
        sup, tgt = sup[:, 1:], tgt[:, 1:]  # frame tokens; then the "first" token of what is left (token 1)
        views[name] = (otam(tgt, sup), cos_eps(tgt[:, 0], sup[:, 0]))
    (d_up, t_up), (d_down, t_down) = views["up"], views["down"]
    logits = -(d_up + d_down)
    ce = -torch.log_softmax(logits, -1)[torch.arange(M), labels].sum()  # summed over the queries
    tu, td = torch.softmax(t_up, -1).max(-1).values, torch.softmax(t_down, -1).max(-1).values
    vd = torch.softmax(-d_down, -1).max(-1).values
    down_reliable = ~(tu >= td)  # dist_condition [1, 0]: the text score decides; a tie goes up (local)
    if not down_reliable.any():
        return ce, logits
    p_down, p_up = torch.softmax(-d_down, -1), torch.softmax(-d_up, -1)
    kl = (p_down * (p_down.log() - p_up.log())).sum(-1)[down_reliable]  # teacher down (global), student up
    w = (vd + td)[down_reliable]
    return ce + (kl * w).sum() / w.sum(), logits  # up2down keeps the down-reliable term


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_preset_loss_and_gradients_equal_the_authors_computation(seed):
    preset = load_preset("reference").model
    cfg = ModelConfig.from_dict({**preset, "dim": D, "heads": HEADS, "mlp_dim": 64, "attn_dropout": 0.0,
                                 "ff_dropout": 0.0, "tcn_dropout": 0.0})
    torch.manual_seed(seed)
    model = build_model(cfg).double().train()
    g = torch.Generator().manual_seed(10 + seed)
    support = torch.randn(1, N, K, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    # close prompts, so that PPS really draws and the text scores of the views are close
    prompts = (torch.randn(1, 1, D, generator=g, dtype=torch.float64) + 0.3 * torch.randn(1, N, D, generator=g,
               dtype=torch.float64)).requires_grad_(True)
    query = torch.randn(1, M, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, N, (1, M), generator=g)

    scores = model(support, prompts, query, generator=torch.Generator().manual_seed(seed))
    ours, parts = model.loss(scores, labels)
    theirs, logits = authors_loss(model, support[0], prompts[0], query[0], labels[0], scores.prompt_choice[0])
    torch.testing.assert_close(scores.logits[0], logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    assert parts["distill_g2l"] == 0.0 and parts["distill_l2g"] > 0  # one direction only, and it acts here

    leaves = [support, prompts, query, *model.parameters()]
    for a, b in zip(torch.autograd.grad(ours, leaves, allow_unused=True),
                    torch.autograd.grad(theirs, leaves, allow_unused=True)):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def authors_clip_fsar_episode(model, support, texts, query, labels, episode_classes, weight, heads):
    """One episode of the authors' CLIP-FSAR training step: support (N, K, T, D), texts (C, D) every train class's
    text feature, query (M, T, D), labels (M,), episode_classes (N,) -> (loss before the division by the episodes
    per step, logits (M, N))."""
    n, k = support.shape[:2]
    block = model.blocks[0]
    context2 = lambda x: authors_layer(x, x, block, heads)  # noqa: E731  (depth 1, self-attention)
    support_text = texts[episode_classes].repeat_interleave(k, 0)[:, None]  # (N·K, 1, D): each video's class text
    merged = support.mean(1)  # MERGE_BEFORE: the class's videos averaged, and its texts
    merged_text = support_text.reshape(n, k, 1, D).mean(1)
    prototypes = context2(torch.cat([merged, merged_text], 1))[:, :T]
    target = context2(query)
    logits = -otam(target, prototypes)
    ce = F.cross_entropy(logits, labels)
    videos = torch.cat([support.reshape(n * k, T, D), query]).mean(1)
    class_logits = cos_eps(videos, texts) * model.text_scale
    real = torch.cat([episode_classes.repeat_interleave(k), episode_classes[labels]])
    return ce + weight * F.cross_entropy(class_logits, real), logits


@pytest.mark.parametrize("preset", ["clip-fsar-hmdb51", "clip-fsar-ssv2_full", "reference-clip-fsar"])
@pytest.mark.parametrize("seed,shot", [(0, 1), (1, 1), (2, 2), (3, 3)])
def test_clip_fsar_presets_loss_and_gradients_equal_the_authors_computation(preset, seed, shot):
    model_cfg = load_preset(preset).model
    cfg = ModelConfig.from_dict({**model_cfg, "dim": D, "mlp_dim": 64, "attn_dropout": 0.0, "ff_dropout": 0.0})
    torch.manual_seed(seed)
    model = build_model(cfg).double().train()
    with torch.no_grad():
        model.text_scale.fill_(1.0 + 0.5 * seed)  # a learned scale away from its initial 1
    E, C = 2, 7
    g = torch.Generator().manual_seed(20 + seed)
    support = torch.randn(E, N, shot, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    query = torch.randn(E, M, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    texts = torch.randn(C, D, generator=g, dtype=torch.float64, requires_grad=True)
    episode_classes = torch.stack([torch.randperm(C, generator=g)[:N] for _ in range(E)])
    labels = torch.randint(0, N, (E, M), generator=g)

    scores = model(support, texts[episode_classes], query, class_texts=ClassTexts(texts, episode_classes))
    ours, _ = model.loss(scores, labels)
    theirs = []
    for e in range(E):
        loss, logits = authors_clip_fsar_episode(model, support[e], texts, query[e], labels[e], episode_classes[e],
                                                 cfg.fsar_text_weight, cfg.heads)
        torch.testing.assert_close(scores.logits[e], logits, rtol=0, atol=1e-13)
        theirs.append(loss / E)  # loss / BATCH_SIZE, accumulated over the step's episodes
    theirs = sum(theirs)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-14)
    leaves = [support, query, texts, *model.parameters()]
    for a, b in zip(torch.autograd.grad(ours, leaves), torch.autograd.grad(theirs, leaves)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
