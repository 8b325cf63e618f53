"""The ordered shot mean of the class prototypes, and the reused scoring path that sums shots while gathering them."""

import pytest
import torch

from mdmf.base import ordered_shot_mean
from mdmf.config import ModelConfig
from mdmf.registry import build_model
from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec
from mdmf.pipeline.episodes.scoring import _gather, _gather_prototypes, naive_logits, reused_logits
from mdmf.pipeline.evaluate.episodic import EvalConfig

SMALL = dict(dim=32, heads=4, mlp_dim=64)


@pytest.mark.parametrize("shots", [1, 2, 5, 7])
@pytest.mark.parametrize("width", [3, 512, 1000])
def test_ordered_shot_mean_is_the_sequential_sum_then_one_division(shots, width):
    tokens = torch.randn(4, 5, shots, 9, width, generator=torch.Generator().manual_seed(shots * width))
    # Ground truth written out by hand: element by element in Python floats is too slow, so the order is spelled
    # out with one tensor addition per shot (each element of an addition is one IEEE operation).
    want = tokens[:, :, 0].clone()
    for k in range(1, shots):
        want = want + tokens[:, :, k]
    if shots > 1:
        want = want / shots
    got = ordered_shot_mean(lambda k: tokens[:, :, k], shots)
    assert torch.equal(got, want)
    buffer = tokens[:, :, 0].clone()
    in_place = ordered_shot_mean(lambda k: buffer if k == 0 else tokens[:, :, k], shots, in_place=True)
    assert in_place.data_ptr() == buffer.data_ptr() and torch.equal(in_place, want)
    torch.testing.assert_close(got, tokens.mean(dim=2), rtol=1e-6, atol=1e-6)
    # and in float64 the two agree to rounding, an independent check of the arithmetic
    torch.testing.assert_close(got.double(), tokens.double().sum(2) / shots, rtol=1e-6, atol=1e-6)


def test_ordered_shot_mean_is_differentiable_and_leaves_its_input_alone():
    tokens = torch.randn(2, 3, 5, 4, 6, requires_grad=True)
    before = tokens.detach().clone()
    ordered_shot_mean(lambda k: tokens[:, :, k], 5).sum().backward()
    assert torch.equal(tokens.detach(), before)
    torch.testing.assert_close(tokens.grad, torch.full_like(tokens, 0.2))


@pytest.mark.parametrize("shots", [1, 5])
def test_gathered_prototypes_equal_the_models_prototypes_bit_for_bit(shots):
    gen = torch.Generator().manual_seed(shots)
    table = {"global": torch.randn(50, 9, 512, generator=gen), "local": torch.randn(50, 9, 1024, generator=gen)}
    buffers = {}
    for episodes in (7, 3, 7):  # buffers allocated, reused for a smaller chunk, reused again
        index = torch.randint(0, 50, (episodes, 5, shots), generator=gen)
        want = build_model(ModelConfig(name="otam", dim=32)).prototypes(_gather(table, index))
        for bufs in (None, buffers):
            got = _gather_prototypes(table, index, bufs)
            assert got.keys() == want.keys()
            for view in want:
                assert got[view].shape == (episodes, 5, 9, table[view].shape[-1])
                assert torch.equal(got[view], want[view])


@pytest.mark.parametrize("name,options", [("mdmf", SMALL), ("otam", {})])
def test_reused_logits_equal_forward_logits_bit_for_bit_at_five_shots(name, options, threads=1):
    """In order on one thread (the GPU's path). The CPU worker threads differ from `forward` in the last bit, with
    or without the fused shot sum; their predictions are checked in tests/test_evaluate_episodic.py."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, **{"dim": 32, **options})).eval()
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(8).repeat_interleave(9)  # 8 classes of 9 videos
    frames = torch.randn(len(labels), 8, 32, generator=gen) + torch.randn(8, 1, 32, generator=gen)[labels]
    prompts = torch.randn(8, 32, generator=gen)
    # `score` on a whole batch at a time, as `forward` does: smaller chunks change OTAM's matrix products in the
    # last bit (not the predictions; tests/test_evaluate_episodic.py covers those)
    cfg = EvalConfig(way=5, shot=5, queries=1, episodes=120, batch_episodes=50, batch_videos=16, score_episodes=50,
                     progress=False)
    sampler = EpisodeSampler(labels.numpy(), EpisodeSpec(5, 5, 1), seed=0, views=1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            fast = list(reused_logits(model, sampler, frames, prompts, labels, cfg, "test"))
    finally:
        torch.set_num_threads(before)
    with torch.no_grad():
        slow = list(naive_logits(model, sampler, frames, prompts, cfg))
    assert [f[0] for f in fast] == [s[0] for s in slow] == [0, 50, 100]
    for (_, _, fast_logits, fast_prompt), (_, _, slow_logits, slow_prompt) in zip(fast, slow):
        assert torch.equal(fast_prompt, slow_prompt)
        assert torch.equal(fast_logits, slow_logits), (fast_logits - slow_logits).abs().max()



@pytest.mark.parametrize("name,options", [("trx", {"trx_dim": 16}), ("protonet", {})])
def test_uneven_shots_of_a_head_that_scores_every_shot(name, options):
    """Heads that `scores_shots` (docs/HEADS.md) with uneven shots (`predict`): each class's column is that of an
    episode holding that class alone (they score a class from its own shots, never from the class mean)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, dim=16, frames=8, **options)).eval()
    g = torch.Generator().manual_seed(1)
    shots = [torch.randn(k, 8, 16, generator=g) for k in (1, 3, 2)]
    prompts, query = torch.randn(1, 3, 16, generator=g), torch.randn(1, 4, 8, 16, generator=g)
    with torch.no_grad():
        logits = model(shots, prompts, query).logits[0]
        for c, support in enumerate(shots):
            alone = model(support[None, None], prompts[:, c : c + 1], query).logits[0, :, 0]
            torch.testing.assert_close(logits[:, c], alone, rtol=0, atol=0)
        # not what the class means would give: the test can fail
        means = model(torch.stack([s.mean(0, keepdim=True) for s in shots])[None], prompts, query).logits[0]
    assert not torch.allclose(logits, means)
