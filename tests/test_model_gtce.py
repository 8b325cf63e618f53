"""Global Temporal Context Extractor (TCN)."""

import torch
from torch.nn.utils import parametrize

from mdmf.gtce import GlobalTemporalContext, TemporalBlock


def test_output_is_input_plus_one_repeated_vector():
    gtce = GlobalTemporalContext(16).eval()
    x = torch.randn(2, 8, 16)
    delta = gtce(x) - x  # (B, T, D)
    torch.testing.assert_close(delta, delta[:, :1].expand_as(delta))
    assert delta.abs().sum() > 0


def test_temporal_block_is_causal_and_weight_normed():
    block = TemporalBlock(16, kernel=3, dilation=2, dropout=0.0).eval()
    assert parametrize.is_parametrized(block.conv1, "weight") and parametrize.is_parametrized(block.conv2, "weight")
    x = torch.randn(1, 16, 8)  # (B, D, T)
    y = x.clone()
    y[0, :, 5] += 1.0
    changed = (block(x) - block(y)).abs().amax(1)[0] > 1e-6  # (T,)
    assert not changed[:5].any() and changed[5]


def test_last_step_sees_every_frame_with_the_paper_dilations_only():
    x = torch.randn(1, 8, 16)
    y = x.clone()
    y[0, 0] += 1.0  # change the first frame; look at frame 7, which F_g takes from the TCN's last step
    torch.manual_seed(0)
    paper = GlobalTemporalContext(16, dilations=(1, 2, 4)).eval()
    torch.manual_seed(0)
    short = GlobalTemporalContext(16, dilations=(1,)).eval()  # receptive field 5 < 8
    assert (paper(x) - paper(y))[0, 7].abs().max() > 1e-6
    torch.testing.assert_close(short(x)[0, 7], short(y)[0, 7])


def test_dropout_acts_in_training():
    gtce = GlobalTemporalContext(16, dropout=0.5).train()
    x = torch.randn(2, 8, 16)
    assert not torch.allclose(gtce(x), gtce(x))
