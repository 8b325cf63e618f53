"""Multi-modal Fusion Encoder and the transformer block under it."""

import pytest
import torch
import torch.nn.functional as F

from mdmf.layers import PositionEmbedding, PreLNBlock, ReferenceBlock
from mdmf.mmfe import MultiModalFusionEncoder


def mmfe(**kw):
    torch.manual_seed(0)
    return MultiModalFusionEncoder(dim=32, frames=8, heads=4, mlp_dim=64, **kw).eval()


def inputs(b=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 32, generator=g), torch.randn(b, 8, 32, generator=g), torch.randn(b, 8, 32, generator=g)


def test_shapes_and_block_kinds():
    prompt, frames, context = inputs()
    enc = mmfe(depth=2)  # the reference block: the second layer self-attends on the first one's output
    assert enc(prompt, frames, context).shape == (3, 9, 32)
    assert enc.cross == [True, False] and all(isinstance(b, ReferenceBlock) for b in enc.blocks)
    pre_ln = mmfe(depth=2, block="pre-ln")  # the standard block: every layer cross-attends the raw frames
    assert pre_ln(prompt, frames, context).shape == (3, 9, 32)
    assert pre_ln.cross == [True, True] and all(isinstance(b, PreLNBlock) and b.cross for b in pre_ln.blocks)
    ntc = mmfe(self_attention=True, block="pre-ln")
    assert ntc(prompt, frames).shape == (3, 9, 32)
    assert not ntc.blocks[0].cross and ntc.blocks[0].norm_memory is None
    assert mmfe(self_attention=True).cross == [False]


def test_queries_come_from_context_and_keys_from_frames():
    prompt, frames, context = inputs()
    enc = mmfe()
    base = enc(prompt, frames, context)
    assert not torch.allclose(base, enc(prompt, frames, context + 1))
    assert not torch.allclose(base, enc(prompt, frames + 1, context))
    assert not torch.allclose(base, enc(prompt + 1, frames, context))


def test_context_argument_matches_the_mode():
    prompt, frames, context = inputs()
    with pytest.raises(ValueError, match="context"):
        mmfe()(prompt, frames)
    with pytest.raises(ValueError, match="context"):
        mmfe(self_attention=True)(prompt, frames, context)


def test_position_embedding_breaks_permutation_equivariance():
    """Without positions, self-attention + MLP is equivariant to reordering the frames; with them it is not."""
    prompt, frames, _ = inputs()
    order = torch.tensor([3, 1, 7, 0, 2, 6, 4, 5])
    tokens_order = torch.cat([torch.zeros(1, dtype=torch.long), order + 1])
    plain = mmfe(self_attention=True, position_embedding=False)
    torch.testing.assert_close(plain(prompt, frames[:, order]), plain(prompt, frames)[:, tokens_order],
                               rtol=1e-5, atol=1e-5)
    positioned = mmfe(self_attention=True)
    assert not torch.allclose(positioned(prompt, frames[:, order]), positioned(prompt, frames)[:, tokens_order],
                              atol=1e-4)


def test_eval_output_of_a_video_does_not_depend_on_the_batch():
    prompt, frames, context = inputs(5)
    enc = mmfe()
    torch.testing.assert_close(enc(prompt[:1], frames[:1], context[:1]), enc(prompt, frames, context)[:1],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block,dropouts", [("reference", dict(attn_dropout=0.5, ff_dropout=0.0)),
                                             ("reference", dict(attn_dropout=0.0, ff_dropout=0.5)),
                                             ("pre-ln", dict(attn_dropout=0.5))])
def test_dropout_acts_in_training_only(block, dropouts):
    prompt, frames, context = inputs()
    enc = mmfe(block=block, **dropouts).train()
    assert not torch.allclose(enc(prompt, frames, context), enc(prompt, frames, context))
    enc.eval()
    torch.testing.assert_close(enc(prompt, frames, context), enc(prompt, frames, context))


def test_block_memory_argument_matches_the_mode():
    x = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="memory"):
        PreLNBlock(8, 2, 16, 0.0, cross=True)(x)
    with pytest.raises(ValueError, match="memory"):
        PreLNBlock(8, 2, 16, 0.0)(x, x)


def _authors_layer(q, k, v, block: ReferenceBlock, heads: int):
    """The authors' attention + FF layer written out from plain torch ops (METHOD §4), using `block`'s weights:
    one LayerNorm for q, k and v; bias-free projections; softmax(QKᵀ·d^-½)V per head; `to_out` with bias; a
    residual to the un-normalised q; then FF(x) + x with no LayerNorm in front. Dropout is off (eval)."""
    ln = lambda t: F.layer_norm(t, t.shape[-1:], block.norm.weight, block.norm.bias, block.norm.eps)
    B, L, D = q.shape
    d = D // heads
    heads_of = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d).permute(0, 2, 1, 3)  # (B, h, L, d)
    Q = heads_of(ln(q) @ block.to_q.weight.T)
    K = heads_of(ln(k) @ block.to_k.weight.T)
    V = heads_of(ln(v) @ block.to_v.weight.T)
    attn = torch.exp(Q @ K.transpose(-1, -2) / d ** 0.5)
    attn = attn / attn.sum(-1, keepdim=True)
    out = (attn @ V).permute(0, 2, 1, 3).reshape(B, L, D)
    x = out @ block.to_out[0].weight.T + block.to_out[0].bias + q
    hidden = x @ block.ff[0].weight.T + block.ff[0].bias
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / 2 ** 0.5))  # exact GELU
    return hidden @ block.ff[3].weight.T + block.ff[3].bias + x


@pytest.mark.parametrize("depth", [1, 2])
def test_reference_block_equals_the_authors_transformer_in_float64(depth):
    """The MMFE with the reference block and no position embedding (the authors' setting) against the authors'
    transformer built by hand: outputs and the gradients of inputs and of every weight agree to float64 precision.
    The authors' layers after the first attend to their own output (q = k = v = x)."""
    torch.manual_seed(3)
    enc = MultiModalFusionEncoder(dim=32, frames=8, heads=4, mlp_dim=64, depth=depth, position_embedding=False,
                                  block="reference").double().eval()
    for p in enc.parameters():  # LayerNorm starts at (1, 0): move it off so a missing LayerNorm would show
        p.data.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(4)
    prompt, frames, context = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
                               for shape in [(3, 32), (3, 8, 32), (3, 8, 32)])
    ours = enc(prompt, frames, context)

    q = torch.cat([prompt[:, None], context], dim=1)
    kv = torch.cat([prompt[:, None], frames], dim=1)
    x = _authors_layer(q, kv, kv, enc.blocks[0], heads=4)
    for block in enc.blocks[1:]:
        x = _authors_layer(x, x, x, block, heads=4)
    torch.testing.assert_close(ours, x, rtol=1e-12, atol=1e-12)

    weights = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    leaves = [prompt, frames, context, *enc.parameters()]
    grads_ours = torch.autograd.grad((ours * weights).sum(), leaves)
    grads_authors = torch.autograd.grad((x * weights).sum(), leaves)
    for a, b in zip(grads_ours, grads_authors):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_reference_block_has_no_projection_biases_and_one_layernorm():
    block = ReferenceBlock(32, 4, 64, 0.2, 0.05)
    assert all(lin.bias is None for lin in (block.to_q, block.to_k, block.to_v))
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in block.modules()) == 1
    assert [type(m).__name__ for m in block.ff] == ["Linear", "GELU", "Dropout", "Linear", "Dropout"]
    assert block.ff[2].p == block.ff[4].p == 0.05 and block.to_out[1].p == 0.2


def test_position_embedding_rejects_too_many_tokens():
    with pytest.raises(ValueError, match="positions"):
        PositionEmbedding(4, 8)(torch.randn(1, 5, 8))


@pytest.mark.parametrize("self_attention", [False, True])
def test_attention_weights_on_request_leave_the_output_unchanged(self_attention):
    prompt, frames, context = inputs()
    enc = mmfe(depth=2, self_attention=self_attention)
    ctx = None if self_attention else context
    plain = enc(prompt, frames, ctx)
    out, weights = enc(prompt, frames, ctx, return_attention=True)
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)
    assert weights.shape == (3, 2, 4, 9, 9)  # (B, depth, heads, T+1 queries, T+1 keys)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 4, 9))
    assert (weights >= 0).all()


def test_attention_weights_follow_the_keys():
    """Keys made of one repeated frame except a distinct prompt: attention is uniform over the identical frames."""
    prompt, frames, context = inputs(1)
    enc = mmfe(self_attention=False, position_embedding=False)
    same = frames[:, :1].expand(1, 8, 32)
    _, weights = enc(prompt, same, context, return_attention=True)
    w = weights[0, 0]  # (heads, 9, 9)
    torch.testing.assert_close(w[..., 1:], w[..., 1:2].expand_as(w[..., 1:]))


def test_mdmf_attention_matches_its_views_and_prompt_rules():
    from mdmf.config import ModelConfig
    from mdmf.model import MDMF

    torch.manual_seed(0)
    model = MDMF(ModelConfig(dim=32, heads=4, mlp_dim=64, pps=False)).eval()
    _, frames, _ = inputs(2)
    prompts = torch.randn(2, 32)
    encoded = model.encode(frames)
    maps = model.attention(encoded, prompts, "query")
    assert set(maps) == {"global", "local"} and maps["local"].shape == (2, 1, 4, 9, 9)
    # pps=False: queries get the zero prompt in fuse, and so in attention
    torch.testing.assert_close(maps["local"], model.attention(encoded, None, "query")["local"])
    assert not torch.allclose(model.attention(encoded, prompts, "support")["local"], maps["local"])
