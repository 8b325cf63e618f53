"""Pretrain the `tiny` CLIP backbone (pipeline/assets/open_clip/mdmf-tiny.json) on captioned frames of the toy world.

Random-initialised CLIP features are nearly constant (cosine 0.95–1.00 between unrelated frames), so the toy demo could
not show learning on them. This script gives the tiny model features that carry what a toy frame shows: it draws
random scenes with the toy renderer (`mdmf.pipeline.data.toy`: the same shapes, colours, sizes, poses and background as the toy
videos, but no motion and no class labels), captions them ("a large red triangle at the upper left pointing down"),
crops them the way the pipeline does (shorter side to S·256/224, the centre S×S, the model's mean/std), and trains
open_clip's own model with open_clip's `ClipLoss`.

The first `place_steps` batches show one object each (only where it is and how it is turned tell the captions
apart); later batches are groups of 8 scenes that share one object (shape, colour, size) and differ in place and pose.
Without the first phase the easy attributes (size, colour, shape) separate a batch and the model never learns position
(measured: cosine 0.97–0.997 between the same object 16 px apart, whatever the learning rate, groups or steps), and
OTAM on its features cannot see motion. Colour is named in only some captions for the same reason: it is nuisance for
the toy classes. docs/TOY.md has the measurements.

Seeded and reproducible (the same seed, torch version and thread count give the same tensors); a few minutes on
2 CPU cores with the defaults (up to 13 when the cores are shared). Prints the loss curve, writes a float16 state_dict loadable by
`open_clip.create_model('mdmf-tiny', pretrained=PATH)` after `open_clip.add_model_config(pipeline/assets/open_clip)`.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/pretrain_tiny.py        # writes pipeline/assets/mdmf-tiny-toy.pt
    OMP_NUM_THREADS=1 .venv/bin/python scripts/pretrain_tiny.py --steps 50 --out /tmp/t.pt
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mdmf.pipeline.data.toy import (  # noqa: E402
    CROP_FRACTION, EXTENT, PALETTE, SHAPES, Sprite, random_sprite, reach, render_frame, visible_box,
)

CONFIG_DIR = REPO / "pipeline" / "assets" / "open_clip"
MODEL = "mdmf-tiny"
DEFAULT_OUT = REPO / "pipeline" / "assets" / "mdmf-tiny-toy.pt"
COLOUR_NAMES = {rgb: name for name, rgb in PALETTE.items()}

COLUMNS = ("far left", "left", "centre", "right", "far right")
ROWS = ("top", "upper", "middle", "lower", "bottom")
SIZES = ("tiny", "small", "medium", "large", "huge")
SIZE_RANGE = (4.0, 14.0)  # sizes named tiny .. huge
REACH_RANGE = (5.0, 16.0)  # how far objects extend from their centre in the videos (growing/shrinking: all of it)
HEADINGS = ("right", "down right", "down", "down left", "left", "up left", "up", "up right")  # y points down


@dataclass
class PretrainConfig:
    steps: int = 500
    batch: int = 128
    group: int = 8  # scenes per group sharing one object and differing in place and pose (1: independent scenes)
    place_steps: int = 200  # first steps: one object per batch, so only place and pose tell captions apart
    lr: float = 3e-4  # at 5e-4 position was not learned (the features ignored where the object is)
    warmup: int = 30
    seed: int = 0
    colours: int = len(PALETTE)  # palette colours drawn (the videos use the first 4)
    colour_prob: float = 0.3  # how often a caption names the colour
    pose_prob: float = 0.85  # how often it names the pose
    pair_prob: float = 0.15  # groups showing a same-looking pair, as the two-object videos do
    threads: int = 1


# ---- captions ----------------------------------------------------------------------------------------------------


def _bin(value: float, lo: float, hi: float, n: int) -> int:
    return int(np.clip((value - lo) / (hi - lo) * n, 0, n - 1))


def _pose(s: Sprite) -> str:
    """Orientation words: heading for a triangle (360°), line direction for a bar (180°), tilt for a square (90°)."""
    deg = math.degrees(s.angle) % 360
    if s.shape == "triangle":
        return "pointing " + HEADINGS[int(((deg + 22.5) % 360) // 45)]
    if s.shape == "bar":
        return ("horizontal", "tilted down to the right", "vertical", "tilted up to the right")[int(((deg % 180) + 22.5) % 180 // 45)]
    if s.shape == "square":
        return ("upright", "turned right", "turned left")[int(((deg % 90) + 15) % 90 // 30)]
    return ""


def _where(s: Sprite, size: int) -> str:
    margin = size * (1 - CROP_FRACTION) / 2
    return f"{ROWS[_bin(s.y, margin, size - margin, 5)]} {COLUMNS[_bin(s.x, margin, size - margin, 5)]}"


def caption(sprites: list[Sprite], size: int, rng: np.random.Generator, colour_prob: float = 0.3,
            pose_prob: float = 0.85) -> str:
    """What a toy frame shows: "a large red triangle at the upper left pointing down", or a same-looking pair."""
    s = sprites[0]
    big = SIZES[_bin(s.size * 64 / size, *SIZE_RANGE, 5)]
    colour = COLOUR_NAMES[s.colour] + " " if rng.random() < colour_prob else ""
    if len(sprites) > 1:
        places = " and the ".join(_where(p, size) for p in sprites)
        return f"two {big} {colour}{s.shape}s at the {places}"
    pose = _pose(s) if rng.random() < pose_prob else ""
    return f"a {big} {colour}{s.shape} at the {_where(s, size)}" + (f" {pose}" if pose else "")


# ---- scenes ------------------------------------------------------------------------------------------------------


def _cells(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """`(n, 2)` positions in distinct cells of the 5×5 caption grid where possible, jittered inside the cell."""
    cells = rng.permutation(25)[:n] if n <= 25 else rng.integers(0, 25, n)
    xy = np.stack([cells % 5, cells // 5], axis=1) + rng.random((n, 2))  # in cell units, 0..5
    return lo + xy / 5 * (hi - lo)


def scene_group(rng: np.random.Generator, n: int, cfg: PretrainConfig, size: int = 64) -> list[list[Sprite]]:
    """`n` scenes of one object (or one same-looking pair) at different places and poses."""
    look = random_sprite(rng, size, cfg.colours, SHAPES)
    extent = EXTENT[look.shape]
    if rng.random() < cfg.pair_prob:
        look = replace(look, size=min(look.size, 8.0 * size / 64 / extent))  # as in the two-object videos
        lo, hi = visible_box(size, reach(look))
        scenes = []
        for _ in range(n):
            gap = rng.uniform(2.2 * reach(look), hi - lo)
            mid, across = rng.uniform(lo + gap / 2, hi - gap / 2), rng.uniform(lo, hi)
            pair = [replace(look, x=float(mid - gap / 2), y=float(across)),
                    replace(look, x=float(mid + gap / 2), y=float(across))]
            scenes.append([replace(p, x=p.y, y=p.x) for p in pair] if rng.random() < 0.5 else pair)
        return scenes
    look = replace(look, size=float(rng.uniform(*REACH_RANGE)) * size / 64 / extent)
    lo, hi = visible_box(size, reach(look))
    # spread the group over the caption grid; large objects cannot reach its outer cells, so clip them in
    margin = size * (1 - CROP_FRACTION) / 2
    xy = np.clip(_cells(rng, n, margin, size - margin), lo, hi)
    return [[replace(look, x=float(x), y=float(y), angle=float(rng.uniform(0, 2 * np.pi)))] for x, y in xy]


def batch(rng: np.random.Generator, cfg: PretrainConfig, group: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """`(B, size, size, 3)` uint8 frames and their captions, in groups of `group` scenes of one object."""
    scenes = [s for _ in range(cfg.batch // group) for s in scene_group(rng, group, cfg, size)]
    frames = np.stack([render_frame(s, size) for s in scenes])
    return frames, [caption(s, size, rng, cfg.colour_prob, cfg.pose_prob) for s in scenes]


# ---- training ----------------------------------------------------------------------------------------------------


def pretrain(cfg: PretrainConfig, device: str = "cpu", log=print) -> torch.nn.Module:
    """Train a fresh `mdmf-tiny` CLIP on captioned toy frames; returns it in eval mode."""
    import open_clip
    from open_clip.loss import ClipLoss

    from mdmf.pipeline.data.transforms import FramePreprocessor

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    open_clip.add_model_config(CONFIG_DIR)
    model = open_clip.create_model(MODEL, pretrained=None, device=device).train()
    tokenizer = open_clip.get_tokenizer(MODEL)
    pp = model.visual.preprocess_cfg
    image_size = int(pp["size"][0] if isinstance(pp["size"], (tuple, list)) else pp["size"])
    pre = FramePreprocessor(image_size, tuple(pp["mean"]), tuple(pp["std"]))
    loss_fn = ClipLoss()
    decayed = lambda n, p: p.ndim >= 2 and "embedding" not in n  # noqa: E731
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in model.named_parameters() if decayed(n, p)], "weight_decay": 0.1},
         {"params": [p for n, p in model.named_parameters() if not decayed(n, p)], "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))

    log(f"pretraining {MODEL} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters): {cfg}")
    start, running = time.perf_counter(), []
    for step in range(cfg.steps):
        frames, captions = batch(rng, cfg, cfg.batch if step < cfg.place_steps else cfg.group)
        images = pre(frames).to(device)  # (B, 3, S, S): the pipeline's own resize, centre crop and mean/std
        texts = tokenizer(captions).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        image_features, text_features, logit_scale = model(images, texts)[:3]  # normalised features
        loss = loss_fn(image_features, text_features, logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        running.append(loss.item())
        if (step + 1) % 25 == 0 or step == 0:
            log(f"step {step + 1:4d}  loss {np.mean(running):.3f}  logit scale {model.logit_scale.exp().item():5.1f}"
                f"  lr {lr_at(step):.1e}  {time.perf_counter() - start:5.0f} s")
            running = []
    log(f"done in {time.perf_counter() - start:.0f} s; a caption: {captions[0]!r}")
    return model.eval()


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """A plain float16 state_dict (a few MB); open_clip casts it back to the model's float32 on load."""
    state = {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(PretrainConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    model = pretrain(PretrainConfig(**args), log=lambda m: print(m, flush=True))
    save_weights(model, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
