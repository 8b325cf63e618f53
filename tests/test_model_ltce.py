"""Local Temporal Context Extractor."""

import pytest
import torch
from torch import nn

from mdmf.ltce import LocalTemporalContext


def test_shape_and_layers_of_each_variant():
    paper, reference = LocalTemporalContext(16, variant="paper"), LocalTemporalContext(16, variant="reference")
    x = torch.randn(3, 8, 16)
    assert paper(x).shape == reference(x).shape == (3, 8, 16)
    assert [type(m) for m in paper.net] == [nn.Conv1d, nn.ReLU, nn.BatchNorm1d] * 2
    assert [type(m) for m in reference.net] == [nn.Conv1d, nn.Conv1d]
    with pytest.raises(ValueError, match="paper, reference"):
        LocalTemporalContext(16, variant="v2")


def test_context_is_local():
    """Two 3-wide convs: frame t sees frames t-2 … t+2 only."""
    ltce = LocalTemporalContext(16).eval()
    x = torch.randn(1, 8, 16)
    y = x.clone()
    y[0, 0] += 1.0
    changed = (ltce(x) - ltce(y)).abs().amax(-1)[0] > 1e-6  # (T,)
    assert changed.tolist() == [True, True, True, False, False, False, False, False]


def test_batchnorm_couples_videos_in_training_only():
    ltce = LocalTemporalContext(16)
    video, others = torch.randn(1, 8, 16), torch.randn(4, 8, 16)
    ltce.train()
    assert not torch.allclose(ltce(video), ltce(torch.cat([video, others]))[:1])
    ltce.eval()
    torch.testing.assert_close(ltce(video), ltce(torch.cat([video, others]))[:1])
