"""The shipped `tiny` backbone: its open_clip config and toy-pretrained weights load, and its features carry the frame."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mdmf.pipeline.data.toy import PALETTE, SHAPES, Sprite, render_frame

ASSETS = Path(__file__).resolve().parents[1] / "pipeline" / "assets"
CONFIG_DIR = ASSETS / "open_clip"
WEIGHTS = ASSETS / "mdmf-tiny-toy.pt"


@pytest.fixture(scope="module")
def tiny():
    import open_clip

    from mdmf.pipeline.data.transforms import FramePreprocessor

    open_clip.add_model_config(CONFIG_DIR)
    with torch.random.fork_rng(devices=[]):
        model = open_clip.create_model("mdmf-tiny", pretrained=str(WEIGHTS)).eval()
    pp = model.visual.preprocess_cfg
    pre = FramePreprocessor(int(pp["size"][0]), tuple(pp["mean"]), tuple(pp["std"]))
    return model, pre, open_clip.get_tokenizer("mdmf-tiny")


def _encode(tiny, scenes: list[list[Sprite]]) -> torch.Tensor:
    model, pre, _ = tiny
    frames = np.stack([render_frame(s) for s in scenes])
    with torch.no_grad():
        return torch.nn.functional.normalize(model.encode_image(pre(frames)), dim=-1)


def _mean_offdiagonal(f: torch.Tensor) -> float:
    sim = f @ f.T
    n = len(f)
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def test_config_and_weights_ship_small():
    assert (CONFIG_DIR / "mdmf-tiny.json").is_file()
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 12e6
    state = torch.load(WEIGHTS, weights_only=True)
    assert isinstance(state, dict) and "visual.proj" in state


def test_weights_load_into_the_open_clip_model(tiny):
    model, _, _ = tiny
    state = torch.load(WEIGHTS, weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key].to(value.dtype))
    assert model.visual.preprocess_cfg["size"] == (64, 64)


def test_features_differ_between_toy_frames(tiny):
    rng = np.random.default_rng(0)
    colours = list(PALETTE.values())[:4]
    scenes = [[Sprite(str(rng.choice(SHAPES)), colours[rng.integers(4)], *rng.uniform(18, 46, 2), rng.uniform(7, 11),
                      rng.uniform(0, 6.3))] for _ in range(32)]
    features = _encode(tiny, scenes)
    assert torch.isfinite(features).all()
    assert _mean_offdiagonal(features) < 0.9  # random-init weights give 0.95–1.00


def test_features_follow_where_the_object_is(tiny):
    """The same object 16 px apart must look different: motion is a change of place."""
    rng = np.random.default_rng(1)
    looks = [Sprite(str(rng.choice(SHAPES)), list(PALETTE.values())[i % 4], 24.0, 32.0, 9.0, rng.uniform(0, 6.3))
             for i in range(16)]
    here = _encode(tiny, [[s] for s in looks])
    there = _encode(tiny, [[replace(s, x=40.0)] for s in looks])
    assert float((here * there).sum(-1).mean()) < 0.9


def test_text_tower_encodes_prompts(tiny):
    model, _, tokenizer = tiny
    from mdmf.pipeline.data.splits import prompt_for
    from mdmf.pipeline.data.toy import SPLIT_CLASSES

    prompts = [prompt_for(c) for c in SPLIT_CLASSES["test"]]
    with torch.no_grad():
        text = model.encode_text(tokenizer(prompts))
    assert text.shape == (len(prompts), 64) and torch.isfinite(text).all()
    text = torch.nn.functional.normalize(text, dim=-1)
    assert _mean_offdiagonal(text) < 0.99  # distinct prompts, distinct embeddings


def test_captions_find_their_frames(tiny):
    """What pretraining taught: a frame is closer to its own caption than to other frames' captions."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from pretrain_tiny import PretrainConfig, batch

    model, pre, tokenizer = tiny
    frames, captions = batch(np.random.default_rng(123), PretrainConfig(batch=32, colour_prob=1.0), group=1)
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.encode_image(pre(frames)), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tokenizer(captions)), dim=-1)
    top1 = (img @ txt.T).argmax(1).eq(torch.arange(32)).float().mean().item()
    assert top1 > 0.25  # chance is 1/32
