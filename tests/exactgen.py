"""Real test videos in the containers and codecs the benchmarks ship, with each frame's number drawn into its pixels.

The number is a 12-bit code of big blocks (2 rows × 6 columns, black 0 / white 1, bit 11 top left) under a red band
at the top, so a test reads back which frame it got, robustly through lossy codecs, at any decoded size.
Written with PyAV (`av`); the kinds:

* `avi_bframes`: MPEG-4 Part 2 in AVI with B-frames (`bf=2`, GOP 12), the UCF101/HMDB51 codec family;
* `vfr_mkv`, `vfr_mp4`: H.264 (x264, B-frames) with irregular frame durations (variable frame rate), MKV and MP4;
* `webm_vp9`: VP9 in WebM (SSv2);
* `open_gop_mp4`: H.264 in MP4 with open GOPs (B-frames before a keyframe reference the previous GOP);
* `rotated_mp4`: H.264 in MP4 with a display rotation tag (what `ffmpeg -metadata:s:v:0 rotate=90` writes);
* `h264_mp4`: H.264 in MP4 with x264's default GOP (up to 250 frames), for benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROWS, COLS = 2, 6
BITS = ROWS * COLS


def code_frame(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame `i` as RGB: a red band over the top eighth, then the 12-bit code of `i` in a 2×6 grid of blocks."""
    frame = np.zeros((height, width, 3), np.uint8)
    band = height // 8
    frame[:band, :, 0] = 200
    rows = np.array_split(np.arange(band, height), ROWS)
    cols = np.array_split(np.arange(width), COLS)
    for bit in range(BITS):
        if (i >> (BITS - 1 - bit)) & 1:
            r, c = rows[bit // COLS], cols[bit % COLS]
            frame[r[0] : r[-1] + 1, c[0] : c[-1] + 1] = 255
    return frame


def textured(frame: np.ndarray, i: int, texture: np.ndarray) -> np.ndarray:
    """`frame` with a moving texture (shifted 2 px right and 1 px down per frame) in ±50 of every pixel: decoding
    then costs about what real footage of that size costs, and the code still reads (blocks stay above or below
    127)."""
    h, w = frame.shape[:2]
    moving = np.roll(texture, (i, 2 * i), axis=(0, 1))[:h, :w]
    base = np.where(frame > 127, 200, np.where(frame > 60, frame, 40)).astype(np.int16)
    return np.clip(base + moving[..., None], 0, 255).astype(np.uint8)


def make_texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random texture in [-50, 50], int16."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-50, 50, size=(height // 4 + 2, width // 4 + 2))
    fine = np.kron(coarse, np.ones((4, 4)))[:height, :width]
    return (0.7 * fine + rng.uniform(-15, 15, size=(height, width))).astype(np.int16)


def read_code(frame: np.ndarray) -> int:
    """The number drawn by `code_frame` into an upright decoded RGB frame of any size."""
    h, w = frame.shape[:2]
    band = h // 8
    rows = np.array_split(np.arange(band, h), ROWS)
    cols = np.array_split(np.arange(w), COLS)
    value = 0
    for bit in range(BITS):
        r, c = rows[bit // COLS], cols[bit % COLS]
        # the block's inner half only: codecs smear edges
        rr = r[len(r) // 4 : len(r) - len(r) // 4]
        cc = c[len(c) // 4 : len(c) - len(c) // 4]
        if frame[rr[0] : rr[-1] + 1, cc[0] : cc[-1] + 1].mean() > 127:
            value |= 1 << (BITS - 1 - bit)
    return value


# kind -> (extension, codec, options, variable frame rate, display rotation)
KINDS = {
    "avi_bframes": (".avi", "mpeg4", {"bf": "2", "g": "12", "qscale": "3"}, False, 0),
    "vfr_mkv": (".mkv", "libx264", {"preset": "veryfast", "bf": "3", "g": "24", "crf": "18"}, True, 0),
    "vfr_mp4": (".mp4", "libx264", {"preset": "veryfast", "bf": "3", "g": "24", "crf": "18"}, True, 0),
    "webm_vp9": (".webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "g": "30", "crf": "20",
                                          "b": "0"}, False, 0),
    "open_gop_mp4": (".mp4", "libx264", {"preset": "veryfast", "x264-params": "open-gop=1:keyint=12:min-keyint=12:"
                                         "bframes=3:b-pyramid=normal", "crf": "18"}, False, 0),
    "rotated_mp4": (".mp4", "libx264", {"preset": "veryfast", "bf": "2", "g": "12", "crf": "18"}, False, -90),
    # x264's defaults (B-frames, keyframes up to 10 s apart): how most Kinetics-style MP4s are encoded
    "h264_mp4": (".mp4", "libx264", {"preset": "veryfast", "crf": "20"}, False, 0),
}


def vfr_pts(num_frames: int, seed: int = 0) -> np.ndarray:
    """Presentation times in ms with irregular gaps (20–80 ms), as phone and YouTube clips have."""
    gaps = np.random.default_rng(seed).choice([20, 33, 33, 40, 50, 80], size=num_frames)
    return np.concatenate([[0], np.cumsum(gaps[:-1])]).astype(np.int64)


def write_kind(path: Path, kind: str, num_frames: int, height: int = 48, width: int = 64, fps: int = 25,
               seed: int = 0, texture: bool = False) -> Path:
    """A numbered video of `kind` (see `KINDS`) at `path` (its extension is replaced by the kind's); `texture`: with
    a moving texture over it (`textured`), for benchmarks that need realistic decoding costs."""
    import av

    ext, codec, options, vfr, rotation = KINDS[kind]
    path = Path(path).with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(options)
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        pts = vfr_pts(num_frames, seed) if vfr else None
        tex = make_texture(height + num_frames, width + 2 * num_frames, seed) if texture else None
        for i in range(num_frames):
            image = code_frame(i, height, width)
            if tex is not None:
                image = textured(image, i, tex)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = int(pts[i]), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def sequential_numbers(path: Path) -> list[int]:
    """The drawn numbers of every frame, by an independent plain PyAV decode in presentation order (no seeking), read
    from the frames as stored (before any display rotation)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        return [read_code(f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
