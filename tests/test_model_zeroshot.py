"""`clip-zeroshot` under `--preset reference-clip-zeroshot` is CLIP's zero-shot classifier over the episode's
classes, written out by hand in float64: the query's mean frame embedding and each class's prompt embedding, each
divided by its norm, logits 100 × their dot product (CLIP's logit scale), loss `F.cross_entropy` averaged over the
queries and then over the episodes. The CLIP-FSAR code's own text-only evaluation (`EVAL_TEXT`) ranks the classes
the same way (it softmaxes `scale · cos`, a monotone map). Gradients: those of the inputs (no parameters)."""

import pytest
import torch
import torch.nn.functional as F

from mdmf import ModelConfig, build_model
from mdmf.pipeline.core.presets import load_preset

E, N, M, T, D = 2, 5, 4, 8, 16


def inputs(seed, shot):
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(E, N, shot, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    prompts = torch.randn(E, N, D, generator=g, dtype=torch.float64, requires_grad=True)
    query = torch.randn(E, M, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    return support, prompts, query, torch.randint(0, N, (E, M), generator=g)


def model():
    cfg = ModelConfig.from_dict({**load_preset("reference-clip-zeroshot").model, "dim": D, "frames": T})
    return build_model(cfg).double()


@pytest.mark.parametrize("seed,shot", [(0, 1), (1, 2), (2, 5)])
def test_reference_preset_is_clip_zero_shot(seed, shot):
    net = model()
    support, prompts, query, labels = inputs(seed, shot)
    scores = net(support, prompts, query)
    ours, _ = net.loss(scores, labels)
    theirs = 0
    for e in range(E):
        image = query[e].mean(1)
        image = image / image.norm(dim=1, keepdim=True)
        text = prompts[e] / prompts[e].norm(dim=1, keepdim=True)
        logits = 100.0 * image @ text.T
        torch.testing.assert_close(scores.logits[e], logits, rtol=0, atol=1e-12)
        theirs = theirs + F.cross_entropy(logits, labels[e]) / E
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    leaves = [prompts, query]
    for a, b in zip(torch.autograd.grad(ours, leaves), torch.autograd.grad(theirs, leaves)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_the_support_videos_are_not_looked_at_and_nothing_is_trained():
    net = model()
    support, prompts, query, _ = inputs(3, 2)
    assert not net.needs_training and list(net.parameters()) == []
    blind = net(torch.zeros_like(support), prompts, query).logits
    torch.testing.assert_close(net(support, prompts, query).logits, blind, rtol=0, atol=0)
    with pytest.raises(ValueError, match="class prompts"):
        net.fuse(net.encode(query[0]), None, "support")
