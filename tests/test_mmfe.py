"""Multi-modal Fusion Encoder and the transformer block under it."""

import pytest
import torch

from mdmf.layers import PositionEmbedding, TransformerBlock
from mdmf.mmfe import MultiModalFusionEncoder


def mmfe(**kw):
    torch.manual_seed(0)
    return MultiModalFusionEncoder(dim=32, frames=8, heads=4, mlp_dim=64, **kw).eval()


def inputs(b=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 32, generator=g), torch.randn(b, 8, 32, generator=g), torch.randn(b, 8, 32, generator=g)


def test_shapes_and_block_kinds():
    prompt, frames, context = inputs()
    enc = mmfe(depth=2)
    assert enc(prompt, frames, context).shape == (3, 9, 32)
    assert len(enc.blocks) == 2 and all(b.cross for b in enc.blocks)
    ntc = mmfe(self_attention=True)
    assert ntc(prompt, frames).shape == (3, 9, 32)
    assert not ntc.blocks[0].cross and ntc.blocks[0].norm_memory is None


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


def test_attention_dropout_acts_in_training_only():
    prompt, frames, context = inputs()
    enc = mmfe(attn_dropout=0.5).train()
    assert not torch.allclose(enc(prompt, frames, context), enc(prompt, frames, context))
    enc.eval()
    torch.testing.assert_close(enc(prompt, frames, context), enc(prompt, frames, context))


def test_block_memory_argument_matches_the_mode():
    x = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="memory"):
        TransformerBlock(8, 2, 16, 0.0, cross=True)(x)
    with pytest.raises(ValueError, match="memory"):
        TransformerBlock(8, 2, 16, 0.0)(x, x)


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
