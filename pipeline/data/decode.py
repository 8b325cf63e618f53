"""Reading exact frames from video files: the one reader of extraction, e2e decoding, `predict` and `check-data`.

Frame `i` of a video is the `i`-th frame a plain sequential decode outputs (presentation order), and
`read_frames(video, indices)` returns exactly those frames, the same bytes on every call and in every process.
decord's random access (`get_batch` on sparse indices: seek to a keyframe, decode forward) is not exact on MPEG-4
AVIs with B-frames or on open-GOP H.264 (measured: wrong frames in every read of 8 random indices on the former),
so the reader is PyAV (FFmpeg) with one decoder thread, by strategy:

* `sequential` (every video of up to `LONG_FRAMES` frames: nearly every clip of UCF101 and HMDB51, every one of SSv2
  and Kinetics): the whole stream is decoded once, when the video is opened. The frame count is the number of frames
  that decoded, never the header's (truncated files, over-reported `nb_frames`); packets that fail to decode are
  skipped, as a player does. The decoded frames (still YUV, `HOLD_BYTES` at most) are kept until the reader is
  dropped, so any number of reads converts only the requested frames to RGB; a video too big to hold is decoded a
  second time per read, up to its last requested frame.
* `seek` (longer videos, whose packets all carry distinct timestamps): the frame count is the number of packets, and
  frame `i` is the one with the `i`-th smallest timestamp (a frame that then does not decode fails the read); each read seeks to the keyframe before a requested frame and decodes forward, and every frame
  it returns is checked to carry the requested timestamp. When that check fails, the read decodes from the start
  instead (still selecting by timestamp). Cost: a few GOPs per requested frame instead of the whole file. A long
  video without distinct timestamps is read sequentially up to `MAX_UNTIMED_FRAMES` frames, and refused (recorded as
  failed, with that reason) beyond.

Display rotation (the tag phone footage carries) is applied: frames come out upright, as a player shows them.
FFmpeg's messages are captured (`av.logging.Capture`), never printed; when a file fails they end the recorded reason,
stripped of run-dependent noise (timestamps, addresses) by `clean_reason`, so the same file gives the same reason in
any run and any process.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from mdmf.pipeline.core.errors import MdmfError

READER = "pyav-exact-v1"  # recorded in the store identity: a store read with another reader is never resumed
LONG_FRAMES = 900  # above this many frames (36 s at 25 fps), the `seek` strategy
HOLD_BYTES = 192 << 20  # at most this many bytes of decoded YUV frames held per open video
MAX_UNTIMED_FRAMES = 18_000  # 12 min at 25 fps: a longer video without usable timestamps is refused, not crawled


class VideoReadError(Exception):
    """A video that could not be opened or decoded; the message is the reason recorded in the store."""


def reader_identity() -> dict:
    """The reader and decoder versions behind the frames, for a store's identity."""
    import av

    lib = ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))
    return {"reader": READER, "decoder": f"PyAV {av.__version__}, libavcodec {lib}"}


_NOISE = [
    (re.compile(r"\[\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\]\s*"), ""),  # wall-clock stamps: "[22:43:46] "
    (re.compile(r"\[[a-z0-9_-]+ @ 0x[0-9a-fA-F]+\]\s*"), ""),  # FFmpeg's "[h264 @ 0x55d0c2a4c840] "
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0x…"),  # other addresses
    (re.compile(r"/github/workspace/|/tmp/[^\s:]*build[^\s:]*/"), ""),  # build paths in native messages
    (re.compile(r"\s+"), " "),
]


def clean_reason(text: str, limit: int = 300) -> str:
    """`text` without run-dependent noise (timestamps, addresses), on one line, at most `limit` characters."""
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    return text.strip()[:limit]


def _error_text(err: BaseException) -> str:
    """The first line of an error; for FFmpeg's, its message without the file name (the store has the path)."""
    if getattr(err, "strerror", None) and getattr(err, "filename", None):
        return str(err.strerror)
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class Video:
    """An opened video (see the module docstring). `len(video)` is its frame count."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.strategy = "sequential"
        self._held: list | None = None  # decoded frames (sequential, small enough to hold)
        self._pts: np.ndarray | None = None  # sorted frame timestamps (seek)
        self._keys: np.ndarray | None = None  # timestamps of keyframes (seek)
        self._count = 0
        self._size: tuple[int, int] | None = None  # (width, height) of the first frame
        self._rgb: dict[int, np.ndarray] = {}  # frames already converted, by index
        self._log: list[str] = []

    def __len__(self) -> int:
        return self._count

    @contextlib.contextmanager
    def _captured(self):
        """FFmpeg's messages (errors only) go to this video's log, for a failure's reason, never to the terminal."""
        import av.logging

        before, failure, logs = av.logging.get_level(), None, []
        av.logging.set_level(av.logging.ERROR)
        # PyAV drops a message that repeats the previous one, in whatever video or process (forked workers inherit
        # it): every video's reason must be the same in any run, so nothing is skipped
        av.logging.set_skip_repeated(False)
        try:
            with av.logging.Capture() as logs:
                try:
                    yield
                except VideoReadError as err:
                    failure = str(err)
        finally:
            av.logging.set_level(before)
            self._log.extend(message.strip() for _, _, message in logs if message.strip())
        if failure is not None:
            raise VideoReadError(self._reason(failure)) from None

    # ---- opening ---------------------------------------------------------------------------------------------------
    def _open(self) -> None:
        with self._container() as container:
            stream = container.streams.video[0]
            pts, keys, packets = [], [], []  # packets kept (compressed) for the decode, unless the video is long
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:  # discard: before an edit list's start, never shown
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
                if packets is not None:
                    packets.append(packet)
                    if len(packets) > LONG_FRAMES + 1:
                        packets = None
            ctx = stream.codec_context
            frame_bytes = max(1, (ctx.width or 1) * (ctx.height or 1)) * 3 // 2
            timed = bool(pts) and all(p is not None for p in pts) and len(set(pts)) == len(pts)
            if len(pts) > LONG_FRAMES and timed and keys:
                self.strategy = "seek"
                self._pts, self._keys = np.sort(np.asarray(pts, np.int64)), np.sort(np.asarray(keys, np.int64))
                self._count = len(pts)
                return
            if len(pts) > MAX_UNTIMED_FRAMES:
                raise VideoReadError(f"{len(pts)} frames without distinct timestamps: too long to read exactly "
                                     f"(at most {MAX_UNTIMED_FRAMES}); re-encode or cut it")
            hold = len(pts) * frame_bytes <= HOLD_BYTES
            held, count = [], 0
            frames = self._decode(stream, packets) if packets is not None else self._frames()
            for frame in frames:
                count += 1
                if self._size is None:
                    self._size = (frame.width, frame.height)
                if hold:
                    held.append(frame)
        self._count = count
        self._held = held if hold else None
        if count == 0:
            raise VideoReadError("no decodable frames")

    def _container(self):
        import av

        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except Exception as err:  # noqa: BLE001 - PyAV raises many FFmpegError kinds, and OSError
            raise VideoReadError(f"cannot open: {_error_text(err)}") from None
        if not container.streams.video:
            container.close()
            raise VideoReadError("cannot open: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # one thread: parallelism comes from worker processes, and the output is fixed
        stream.codec_context.thread_count = 1
        return container

    def _frames(self, container=None):
        """Every frame of a sequential decode (from the current position of `container`, else of a fresh one), in
        output order."""
        own = container is None
        container = container or self._container()
        try:
            stream = container.streams.video[0]
            yield from self._decode(stream, container.demux(stream))
        finally:
            if own:
                container.close()

    def _decode(self, stream, packets):
        """The frames of `packets`; a packet that fails to decode is skipped (and noted), as a player does."""
        import av

        for packet in packets:
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                self._log.append(_error_text(err))
                continue
            yield from frames

    # ---- reading ---------------------------------------------------------------------------------------------------
    def read(self, indices) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as `(T, H, W, 3)` uint8 RGB, upright."""
        idx = [int(i) for i in indices]
        if not idx:
            raise VideoReadError("no frames requested")
        bad = [i for i in idx if not 0 <= i < self._count]
        if bad:
            raise VideoReadError(f"frame {bad[0]} requested of a video of {self._count} frames")
        missing = sorted(set(idx) - set(self._rgb))
        if missing:
            if self._held is not None:
                for i in missing:
                    self._rgb[i] = self._convert(self._held[i])
            elif self.strategy == "seek":
                self._read_seek(missing)
            else:
                self._read_sequential(missing)
        return np.stack([self._rgb[i] for i in idx])

    def _read_sequential(self, wanted: list[int]) -> None:
        want, last = set(wanted), max(wanted)
        for i, frame in enumerate(self._frames()):
            if i in want:
                self._rgb[i] = self._convert(frame)
            if i >= last:
                break
        self._check(wanted)

    def _read_seek(self, wanted: list[int]) -> None:
        """By timestamp: seek to the keyframe at or before each wanted frame (unless decoding on from the last one
        gets there first), decode forward, keep the frame with exactly that timestamp."""
        targets = {int(self._pts[i]): i for i in wanted}
        with self._container() as container:
            stream = container.streams.video[0]
            decoded = None  # the running decode, and the timestamp of its last frame
            last = None
            for t in sorted(targets):
                key = int(self._keys[max(0, np.searchsorted(self._keys, t, side="right") - 1)])
                if decoded is None or last is None or last >= t or key > last:
                    container.seek(key, stream=stream, backward=True, any_frame=False)
                    decoded = self._frames(container)
                for frame in decoded:
                    last = frame.pts
                    if frame.pts is None or frame.pts > t:
                        break
                    if frame.pts == t:
                        self._rgb[targets[t]] = self._convert(frame)
                        break
                if targets[t] not in self._rgb:
                    break  # timestamps did not line up: decode from the start instead
        if any(i not in self._rgb for i in wanted):
            self._read_by_timestamp_from_start(targets)

    def _read_by_timestamp_from_start(self, targets: dict[int, int]) -> None:
        last = max(targets)
        for frame in self._frames():
            if frame.pts in targets and targets[frame.pts] not in self._rgb:
                self._rgb[targets[frame.pts]] = self._convert(frame)
            if frame.pts is not None and frame.pts >= last:
                break
        self._check(list(targets.values()))

    def _check(self, wanted: list[int]) -> None:
        lost = [i for i in wanted if i not in self._rgb]
        if lost:
            raise VideoReadError(f"cannot decode frame {lost[0]} of {self._count}")

    def _convert(self, frame) -> np.ndarray:
        if self._size is None:
            self._size = (frame.width, frame.height)
        w, h = self._size
        if (frame.width, frame.height) != (w, h):  # a resolution change mid-stream: one size for the whole video
            frame = frame.reformat(width=w, height=h)
        rgb = frame.to_ndarray(format="rgb24")
        turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns to show it upright
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

    def _reason(self, what: str) -> str:
        if self._log:
            what = f"{what} (decoder: {'; '.join(dict.fromkeys(self._log))})"
        return clean_reason(what)


def open_video(path: Path) -> Video:
    """The exact reader for `path`; raises `VideoReadError` with a short, run-independent reason."""
    path = Path(path)
    if not path.exists():
        raise VideoReadError("file not found")
    if path.stat().st_size == 0:
        raise VideoReadError("empty file (0 bytes)")
    video = Video(path)
    try:
        with video._captured():
            video._open()
    except VideoReadError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of one file is that file's problem, not the run's
        raise VideoReadError(video._reason(f"cannot decode: {type(err).__name__}: {_error_text(err)}")) from None
    return video


def read_frames(video: Video, indices) -> np.ndarray:
    """Frames at `indices` of an opened video as `(T, H, W, 3)` uint8 RGB; raises `VideoReadError`."""
    try:
        with video._captured():
            return video.read(indices)
    except VideoReadError:
        raise
    except Exception as err:  # noqa: BLE001
        raise VideoReadError(video._reason(f"cannot decode frames: {type(err).__name__}: {_error_text(err)}")) from None


# ---- the reader this one replaced, for benchmarks and for measuring how often it was wrong --------------------------
DECORD_EXTRA = "pip install 'mdmf[decord]'"


def import_decord():
    """decord, quiet: an optional extra (`mdmf[decord]`), only for the reader this one replaced and the comparison.

    It is not a dependency: its last release (0.6.0, 2021) has wheels for x86-64 only, so a required decord made
    `pip install mdmf` fail on aarch64 Linux and Apple silicon, and nothing of mdmf's own pipeline reads with it.
    """
    try:
        import decord
    except ImportError:
        raise MdmfError(f"the decord reader needs decord, an optional extra: {DECORD_EXTRA} (decord 0.6 has wheels "
                        "for x86-64 only; mdmf's own reader is PyAV and needs nothing more)") from None
    decord.logging.set_level(decord.logging.QUIET)
    return decord


class DecordBatchReader:
    """decord `get_batch` on the requested indices (mdmf's reader before `READER`); not exact on every file."""

    def __init__(self, path: Path):
        self.reader = import_decord().VideoReader(str(path), num_threads=1)

    def __len__(self) -> int:
        return len(self.reader)

    def read(self, indices) -> np.ndarray:
        return self.reader.get_batch([int(i) for i in indices]).asnumpy()
