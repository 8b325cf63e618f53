"""The built-in `toy` dataset: small generated videos whose classes differ only by motion over time.

One object (two in one family) moves on a constant dark background: left, up-right, out and back, along a corner,
growing, turning, circling, speeding up ... Its shape, colour, size, position and pose are drawn per video from a
small shared set, so no single frame gives the class away: the order of the frames does. Every val and test class has
its mirror or a related motion in train (`moving_left` ↔ `moving_right`, `shrinking` ↔ `growing`), so a few-shot
model can learn motion on train and use it on new classes. Why it is built so, and what was measured on it:
docs/TOY.md.

`generate_toy(root)` writes `root/videos/<class>/<id>.mp4` (PyAV, MPEG-4, 32 frames of 64×64 by default) and the
split files under `root/splits` in the format of docs/CONTRACTS.md, deterministically from `ToyConfig.seed`.

The frame renderer (`Sprite`, `render_frame`, `random_sprite`) is the one place that draws the toy world;
`scripts/pretrain_tiny.py` reuses it to pretrain the `tiny` CLIP backbone on captioned frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from mdmf.pipeline.core import isolation
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.progress import progress_bar

# Bump when the renderer or the motions change what a given config draws: an old folder then fails the stamp check.
GENERATOR_VERSION = 1
STAMP = "toy.json"

BACKGROUND = (18, 18, 26)  # one constant dark background for every video: no background nuisance
PALETTE = {  # a few well-separated colours; `ToyConfig.colours` takes the first n
    "red": (225, 60, 55),
    "green": (60, 200, 85),
    "blue": (70, 115, 245),
    "yellow": (235, 215, 60),
    "white": (230, 230, 230),
    "magenta": (215, 70, 215),
}
SHAPES = ("circle", "square", "triangle", "bar")
ORIENTED_SHAPES = ("square", "triangle", "bar")  # turning is visible on these
RADIUS = (7.0, 11.0)  # object "radius" in px at 64×64: even the smallest is wider than an 8-px patch
CROP_FRACTION = 224 / 256  # the pipeline resizes the shorter side to S·256/224 and keeps the centre S: stay inside


@dataclass(frozen=True)
class ToyConfig:
    """What the toy dataset is made of. Every field changes the videos; the stamp file holds them all."""

    seed: int = 0
    videos_per_class: int = 40
    frame_size: int = 64  # square frames, px
    frames: int = 32  # per video; 8 TSN segments of 4 frames
    fps: int = 16
    colours: int = 4  # how many PALETTE colours objects take (more = more appearance nuisance)
    noise: float = 0.0  # std of Gaussian pixel noise (0-255 scale)

    def __post_init__(self) -> None:
        if self.videos_per_class < 1 or self.frames < 2 or self.frame_size < 32 or self.fps < 1:
            raise ValueError(f"ToyConfig: videos_per_class >= 1, frames >= 2, frame_size >= 32, fps >= 1 ({self})")
        if not 1 <= self.colours <= len(PALETTE):
            raise ValueError(f"ToyConfig.colours must be in 1..{len(PALETTE)}, got {self.colours}")


# ---- the renderer: the one place that draws the toy world --------------------------------------------------------


@dataclass(frozen=True)
class Sprite:
    """One object in one frame, in pixel units of a `frame_size`² frame (x right, y down).

    `angle` (radians) turns the shape clockwise on screen as it grows (y points down); a triangle points along it.
    `size` is the object's radius: a circle's radius; a square or bar of that size has about the circle's area (a bar
    is 2.8 × 1 sizes), a triangle two thirds of it; `reach()` is how far it extends from its centre.
    """

    shape: str
    colour: tuple[int, int, int]
    x: float
    y: float
    size: float
    angle: float = 0.0


_TRIANGLE = np.array([(1.3, 0.0), (-0.8, 1.0), (-0.8, -1.0)])  # pointing along +u, in units of the size


@lru_cache(maxsize=4)
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xx, yy


def _signed_distance(s: Sprite, size: int) -> np.ndarray:
    """`(H, W)` signed distance (px, negative inside) from each pixel centre to the sprite's outline."""
    xx, yy = _pixel_centres(size)
    dx, dy = xx - s.x, yy - s.y
    if s.shape == "circle":
        return np.hypot(dx, dy) - s.size
    c, si = np.cos(s.angle), np.sin(s.angle)
    u, v = c * dx + si * dy, -si * dx + c * dy  # the sprite's own axes: u along its heading
    if s.shape == "square":
        h = 0.89 * s.size  # same area as the circle of that radius
        return np.maximum(np.abs(u) - h, np.abs(v) - h)
    if s.shape == "bar":
        return np.maximum(np.abs(u) - 1.4 * s.size, np.abs(v) - 0.5 * s.size)
    if s.shape == "triangle":
        pts = _TRIANGLE * s.size
        dist = None
        for a, b in zip(pts, np.roll(pts, -1, axis=0)):
            edge = b - a
            normal = np.array([edge[1], -edge[0]]) / np.hypot(*edge)  # outward for this vertex order
            d = (u - a[0]) * normal[0] + (v - a[1]) * normal[1]
            dist = d if dist is None else np.maximum(dist, d)
        return dist
    raise ValueError(f"unknown toy shape {s.shape!r}; known: {', '.join(SHAPES)}")


def render_frame(sprites: list[Sprite], size: int = 64, noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw sprites (later ones on top) on the constant background: `(size, size, 3)` uint8 RGB, anti-aliased edges."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = BACKGROUND
    for s in sprites:
        cover = np.clip(0.5 - _signed_distance(s, size), 0.0, 1.0)  # (H, W) in [0, 1]: anti-aliased edge
        img += cover[..., None] * (np.asarray(s.colour, np.float32) - img)
    if noise > 0:
        img += (rng or np.random.default_rng()).normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


EXTENT = {"circle": 1.0, "square": 0.89 * 2**0.5, "triangle": 1.3, "bar": float(np.hypot(1.4, 0.5))}


def reach(s: Sprite) -> float:
    """The radius (px) of the smallest circle around the sprite's centre that holds it, in any pose."""
    return s.size * EXTENT[s.shape]


def visible_box(size: int, reach: float) -> tuple[float, float]:
    """The range of object centres (px, both axes) that keeps an object of `reach` inside the centre crop."""
    margin = size * (1 - CROP_FRACTION) / 2
    return margin + reach + 1.0, size - margin - reach - 1.0


def random_sprite(rng: np.random.Generator, size: int = 64, colours: int = 4, shapes: tuple[str, ...] = SHAPES,
                  radius: tuple[float, float] = RADIUS) -> Sprite:
    """An object drawn from the toy world's appearance distribution, somewhere inside the centre crop."""
    shape = str(rng.choice(shapes))
    colour = PALETTE[str(rng.choice(list(PALETTE)[:colours]))]
    r = float(rng.uniform(*radius)) * size / 64
    lo, hi = visible_box(size, r * EXTENT[shape])
    x, y = rng.uniform(lo, hi, 2)
    return Sprite(shape, colour, float(x), float(y), r, angle=float(rng.uniform(0, 2 * np.pi)))


# ---- motions: one function per class, (rng, t, look) -> sprites per frame ---------------------------------------

Motion = Callable[[np.random.Generator, np.ndarray, Sprite, int], list[list[Sprite]]]
DIRECTIONS = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
    "up_left": (-1, -1), "up_right": (1, -1), "down_left": (-1, 1), "down_right": (1, 1),
}


def _place(rng: np.random.Generator, look: Sprite, size: int, path: np.ndarray) -> list[list[Sprite]]:
    """Put a path `(F, 2)` given relative to its start at a random start that keeps the whole path in view."""
    lo, hi = visible_box(size, reach(look))
    start = []
    for axis in range(2):
        a, b = lo - path[:, axis].min(), hi - path[:, axis].max()
        start.append(rng.uniform(a, b) if b > a else (a + b) / 2)
    xy = path + np.array(start)
    return [[replace(look, x=float(x), y=float(y))] for x, y in xy]


def _span(size: int, look: Sprite) -> float:
    lo, hi = visible_box(size, reach(look))
    return hi - lo


def _straight(direction: str) -> Motion:
    d = np.array(DIRECTIONS[direction], np.float64)

    def motion(rng, t, look, size):
        travel = _span(size, look) * rng.uniform(0.75, 0.95)
        return _place(rng, look, size, t[:, None] * travel * d)
    return motion


def _out_and_back(direction: str) -> Motion:
    d = np.array(DIRECTIONS[direction], np.float64)

    def motion(rng, t, look, size):
        travel = _span(size, look) * rng.uniform(0.75, 0.95)
        return _place(rng, look, size, np.sin(np.pi * t)[:, None] * travel * d)
    return motion


def _corner(first: str, then: str) -> Motion:
    d1, d2 = np.array(DIRECTIONS[first], np.float64), np.array(DIRECTIONS[then], np.float64)

    def motion(rng, t, look, size):
        travel = _span(size, look) * rng.uniform(0.75, 0.95)
        a, b = np.clip(2 * t, 0, 1), np.clip(2 * t - 1, 0, 1)  # first leg in the first half, second leg after
        return _place(rng, look, size, travel * (a[:, None] * d1 + b[:, None] * d2))
    return motion


def _speed(profile: str) -> Motion:
    def motion(rng, t, look, size):
        d = np.array(DIRECTIONS[str(rng.choice(["left", "right", "up", "down"]))], np.float64)
        travel = _span(size, look) * rng.uniform(0.8, 0.95)
        s = t**2 if profile == "up" else 1 - (1 - t) ** 2
        return _place(rng, look, size, s[:, None] * travel * d)
    return motion


def _arc(sign: int) -> Motion:
    """Sideways while going up then down (sign -1: a hop) or down then up (sign +1: a swoop)."""

    def motion(rng, t, look, size):
        span = _span(size, look)
        side = rng.choice([-1.0, 1.0]) * span * rng.uniform(0.7, 0.9)
        height = span * rng.uniform(0.7, 0.9)
        path = np.stack([side * t, sign * height * np.sin(np.pi * t)], axis=1)
        return _place(rng, look, size, path)
    return motion


def _size(growing: bool) -> Motion:
    def motion(rng, t, look, size):
        small, large = (v * size / 64 / EXTENT[look.shape] for v in (5.0, 16.0))  # reach 5 → 16 px at 64×64
        lo, hi = visible_box(size, large * EXTENT[look.shape])
        x, y = rng.uniform(lo, hi, 2)
        r = small + (large - small) * (t if growing else 1 - t)
        return [[replace(look, x=float(x), y=float(y), size=float(ri))] for ri in r]
    return motion


def _turning(sign: int) -> Motion:
    def motion(rng, t, look, size):
        look = replace(look, shape=str(rng.choice(ORIENTED_SHAPES)))
        lo, hi = visible_box(size, reach(look))
        x, y = rng.uniform(lo, hi, 2)
        turn = np.pi * rng.uniform(0.9, 1.1)
        return [[replace(look, x=float(x), y=float(y), angle=float(look.angle + sign * turn * ti))] for ti in t]
    return motion


def _circling(sign: int) -> Motion:
    def motion(rng, t, look, size):
        radius = _span(size, look) * rng.uniform(0.38, 0.48)
        phase = rng.uniform(0, 2 * np.pi)
        phi = phase + sign * 1.7 * np.pi * t
        path = radius * np.stack([np.cos(phi) - np.cos(phase), np.sin(phi) - np.sin(phase)], axis=1)
        return _place(rng, look, size, path)
    return motion


def _pair(together: bool) -> Motion:
    """Two copies of one object on a horizontal or vertical line, closing (together) or opening the gap."""

    def motion(rng, t, look, size):
        look = replace(look, size=min(look.size, 8.0 * size / 64 / EXTENT[look.shape]))  # room for two
        lo, hi = visible_box(size, reach(look))
        wide, narrow = (hi - lo) * rng.uniform(0.9, 1.0), 2.2 * reach(look)
        gap = narrow + (wide - narrow) * (1 - t if together else t)
        centre, across = (lo + hi) / 2, rng.uniform(lo, hi)
        frames = [[replace(look, x=float(centre - g / 2), y=float(across)),
                   replace(look, x=float(centre + g / 2), y=float(across))] for g in gap]
        if rng.random() < 0.5:  # vertical instead of horizontal
            frames = [[replace(s, x=s.y, y=s.x) for s in f] for f in frames]
        return frames
    return motion


MOTIONS: dict[str, Motion] = {
    **{f"moving_{d}": _straight(d) for d in DIRECTIONS},
    **{f"going_{d}_and_back": _out_and_back(d) for d in ("left", "right", "up", "down")},
    "moving_right_then_down": _corner("right", "down"),
    "moving_down_then_right": _corner("down", "right"),
    "moving_left_then_up": _corner("left", "up"),
    "moving_up_then_left": _corner("up", "left"),
    "speeding_up": _speed("up"),
    "slowing_down": _speed("down"),
    "hopping": _arc(-1),
    "swooping": _arc(+1),
    "growing": _size(True),
    "shrinking": _size(False),
    "turning_clockwise": _turning(+1),
    "turning_counterclockwise": _turning(-1),
    "circling_clockwise": _circling(+1),
    "circling_counterclockwise": _circling(-1),
    "coming_together": _pair(True),
    "moving_apart": _pair(False),
}

# Disjoint class sets; each val/test class has its mirror or a related motion in train (docs/TOY.md has the table).
SPLIT_CLASSES: dict[str, tuple[str, ...]] = {
    "train": (
        "moving_right", "moving_up", "moving_up_left", "moving_down_right", "going_right_and_back",
        "going_up_and_back", "moving_right_then_down", "moving_up_then_left", "speeding_up", "hopping", "growing",
        "turning_clockwise", "circling_clockwise", "moving_apart",
    ),
    "val": (
        "moving_down", "moving_down_left", "going_left_and_back", "moving_left_then_up", "swooping", "coming_together",
    ),
    "test": (
        "moving_left", "moving_up_right", "going_down_and_back", "moving_down_then_right", "slowing_down", "shrinking",
        "turning_counterclockwise", "circling_counterclockwise",
    ),
}

# The train class each val/test class mirrors or is closest to: what a model can carry over from training.
RELATED_TRAIN_CLASS: dict[str, str] = {
    "moving_down": "moving_up",
    "moving_down_left": "moving_up_left",
    "going_left_and_back": "going_right_and_back",
    "moving_left_then_up": "moving_up_then_left",
    "swooping": "hopping",
    "coming_together": "moving_apart",
    "moving_left": "moving_right",
    "moving_up_right": "moving_down_right",
    "going_down_and_back": "going_up_and_back",
    "moving_down_then_right": "moving_right_then_down",
    "slowing_down": "speeding_up",
    "shrinking": "growing",
    "turning_counterclockwise": "turning_clockwise",
    "circling_counterclockwise": "circling_clockwise",
}


# ---- videos -------------------------------------------------------------------------------------------------------


def video_id(class_name: str, index: int) -> str:
    return f"{class_name}_{index:03d}"


def video_rng(config: ToyConfig, class_name: str, index: int) -> np.random.Generator:
    """The generator of one video: a function of (seed, class, index) only, so workers can run in any order."""
    digest = hashlib.sha256(f"toy|{config.seed}|{class_name}|{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def video_sprites(class_name: str, rng: np.random.Generator, config: ToyConfig = ToyConfig()) -> list[list[Sprite]]:
    """The sprites of every frame of one video of `class_name`."""
    if class_name not in MOTIONS:
        raise ValueError(f"unknown toy class {class_name!r}; known: {', '.join(MOTIONS)}")
    look = random_sprite(rng, config.frame_size, config.colours)
    t = np.linspace(0.0, 1.0, config.frames)
    return MOTIONS[class_name](rng, t, look, config.frame_size)


def render_video(class_name: str, index: int, config: ToyConfig = ToyConfig()) -> np.ndarray:
    """Video `index` of `class_name`: `(frames, size, size, 3)` uint8 RGB, deterministic from the config's seed."""
    rng = video_rng(config, class_name, index)
    sprites = video_sprites(class_name, rng, config)
    return np.stack([render_frame(s, config.frame_size, config.noise, rng) for s in sprites])


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """`(F, H, W, 3)` uint8 RGB → an MPEG-4 (part 2) .mp4 at near-lossless quality, every frame a decodable frame."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)


def _write_class(args: tuple[str, str, ToyConfig]) -> int:
    root, class_name, config = args
    for i in range(config.videos_per_class):
        write_mp4(Path(root) / "videos" / class_name / f"{video_id(class_name, i)}.mp4",
                  render_video(class_name, i, config), config.fps)
    return config.videos_per_class


# ---- the dataset folder -------------------------------------------------------------------------------------------


def _stamp(config: ToyConfig) -> dict:
    return {"generator_version": GENERATOR_VERSION, "config": asdict(config)}


def write_splits(splits_dir: Path, config: ToyConfig) -> None:
    """The split files of docs/CONTRACTS.md: `<split>.txt`, `<split>_classes.txt`, `info.json` (flip off)."""
    splits_dir.mkdir(parents=True, exist_ok=True)
    for split, classes in SPLIT_CLASSES.items():
        lines = [f"{c}\t{video_id(c, i)}" for c in classes for i in range(config.videos_per_class)]
        (splits_dir / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (splits_dir / f"{split}_classes.txt").write_text("\n".join(classes) + "\n")
    info = {"name": "toy", "layout": "class_folders", "flip": False, "extensions": ["mp4"],
            "source": f"generated by pipeline/data/toy.py (generator {GENERATOR_VERSION}, seed {config.seed}); docs/TOY.md"}
    (splits_dir / "info.json").write_text(json.dumps(info, indent=2) + "\n")


def _complete(root: Path, config: ToyConfig) -> bool:
    if not all((root / "splits" / f"{s}.txt").is_file() for s in SPLIT_CLASSES):
        return False
    return all((root / "videos" / c / f"{video_id(c, i)}.mp4").is_file()
               for classes in SPLIT_CLASSES.values() for c in classes for i in range(config.videos_per_class))


def generate_toy(root: Path, config: ToyConfig | None = None, progress: bool = True,
                 workers: int | None = None) -> Path:
    """Write the toy dataset under `root` (videos in `root/videos`, split files in `root/splits`); returns `root`.

    Idempotent: `root/toy.json` records the config once every file is written, and a second call with the same config
    does nothing. `config=None` means "whatever toy set is already there, else the default one" (what the CLI's
    `--dataset toy` asks for); an explicit config that differs from the stamped one is an `MdmfError`, as is a folder
    from another generator version or a non-empty folder that holds no toy dataset. `workers` processes render classes
    in parallel (default: up to 2).
    """
    root = Path(root)
    stamp_path = root / STAMP
    if stamp_path.is_file():
        found = _read_stamp(stamp_path)
        if config is None and found and found.get("generator_version") == GENERATOR_VERSION:
            try:
                config = ToyConfig(**found["config"])
            except (TypeError, ValueError):
                pass
        wanted = _stamp(config or ToyConfig())
        if found != wanted:
            raise MdmfError(
                f"{root} holds a toy dataset generated with another config or generator version "
                f"({_describe_difference(found, wanted)}); delete {root} to regenerate it, or give another --root"
            )
        if _complete(root, config):
            return root
    elif root.is_dir():
        strangers = sorted(p.name for p in root.iterdir() if p.name not in ("videos", "splits"))
        if strangers:
            raise MdmfError(
                f"{root} is not empty ({', '.join(strangers[:5])}) and holds no toy dataset; "
                "give an empty or new folder for the toy data (--root DIR)"
            )
    config = config or ToyConfig()

    classes = [c for split in SPLIT_CLASSES.values() for c in split]
    jobs = [(str(root), c, config) for c in classes]
    total = len(classes) * config.videos_per_class
    workers = max(1, min(workers or min(2, os.cpu_count() or 1), len(jobs)))

    with progress_bar(progress, "toy videos", total=total, unit="videos") as advance:
        if workers == 1:
            for job in jobs:
                advance(_write_class(job))
        else:
            # fork: works from any caller (spawn needs an importable __main__); the workers use numpy and PyAV only
            with isolation.pool(workers) as pool:
                for done in pool.map(_write_class, jobs):
                    advance(done)
    write_splits(root / "splits", config)
    stamp_path.write_text(json.dumps(_stamp(config), indent=2) + "\n")  # last: marks the folder complete
    return root


def _read_stamp(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def _describe_difference(found: dict | None, wanted: dict) -> str:
    if not isinstance(found, dict):
        return f"unreadable {STAMP}"
    diffs = []
    if found.get("generator_version") != wanted["generator_version"]:
        diffs.append(f"generator {found.get('generator_version')} vs {wanted['generator_version']}")
    old, new = found.get("config") or {}, wanted["config"]
    diffs += [f"{k} {old.get(k)!r} vs {new[k]!r}" for k in new if old.get(k) != new[k]]
    return ", ".join(diffs) or "stamp differs"
