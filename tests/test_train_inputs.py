"""The episode-input interface of the training loop (`mdmf.pipeline.train.inputs.EpisodeInput`): cached features
and e2e's frames both implement it; the visual encoder is model code (`mdmf.visual_encoder`)."""

import inspect

import pytest
import torch
from torch import nn

from mdmf.visual_encoder import VisualEncoder
from mdmf.pipeline.train.e2e import FrameInput
from mdmf.pipeline.train.inputs import CachedFeatures, EpisodeInput
from mdmf.pipeline.train.loop import TrainConfig, _episode_firsts
from synthetic import make_store

METHODS = ("param_groups", "chunks", "val_split", "state_dict", "load_state_dict", "save_best")
DATA = ("encoder", "uses_scaler", "train", "val", "views")


def test_the_protocol_has_the_eleven_members_the_loop_uses():
    assert set(EpisodeInput.__annotations__) == set(DATA)
    assert all(callable(getattr(EpisodeInput, m)) for m in METHODS) and len(DATA + METHODS) == 11


def test_cached_features_implement_it(tmp_path):
    store = make_store(tmp_path / "store")
    inp = CachedFeatures(store)
    assert isinstance(inp, EpisodeInput) and all(hasattr(inp, m) for m in DATA + METHODS)
    assert inp.encoder is None and not inp.uses_scaler and inp.views == store.views("train")
    assert inp.param_groups() == [] and inp.state_dict() == {}


def test_frame_input_implements_it():
    assert EpisodeInput in FrameInput.__mro__ and all(callable(getattr(FrameInput, m)) for m in METHODS)
    init = inspect.getsource(FrameInput.__init__)
    assert isinstance(FrameInput.uses_scaler, property)
    assert all(f"self.{name}" in init for name in ("encoder", "train", "val", "views"))


class _NoCheckpointing(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def test_the_visual_encoder_is_pure_torch():
    pre = type("Pre", (), {"normalize": staticmethod(lambda crops: crops.float() / 255.0)})()
    enc = VisualEncoder(_NoCheckpointing(), pre)
    out = enc(torch.zeros(2, 3, 3, 2, 2, dtype=torch.uint8))  # (B, T, 3, S, S) -> (B, T, D)
    assert out.shape == (2, 3, 12) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="activation checkpointing is not available"):
        VisualEncoder(_NoCheckpointing(), pre, grad_checkpointing=True)


def test_each_process_gets_its_share_of_every_step():
    from types import SimpleNamespace

    cfg = TrainConfig(store="s", run_dir="r", steps=2, episodes_per_step=8, batch_episodes=2)
    firsts = [_episode_firsts(SimpleNamespace(cfg=cfg, ctx=SimpleNamespace(world=2, rank=r), step=0, chunks=2))
              for r in (0, 1)]
    assert firsts == [[0, 2, 8, 10], [4, 6, 12, 14]]
