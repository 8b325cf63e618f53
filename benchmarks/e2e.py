"""End-to-end training (stage two, `--stage e2e`) timings, everything issue 5 asks for, in one run.

1. Generates UCF-like clips (320×240, 7 s at 25 fps, mpeg4 .avi), 5 train classes × 10 videos (enough for 5-way 5-shot
   with 5 queries per class) and 5 val classes × 2, and extracts a store with `--save-frames` per backbone (random
   weights).
2. Training: for every backbone × shot × AMP × activation checkpointing, a short run through the real training loop
   (`mdmf.pipeline.train.loop.train`, frames from the frame store, 5-way, 5 queries per class, one episode per forward pass):
   seconds per episode (steady state: the first optimizer step is left out) and peak GPU memory. A config that runs
   out of GPU memory is reported as OOM and the next one runs.
3. Data loading (measured before 2.): seconds per 5-way episode decoded in the loader (the exact reader,
   `pipeline/data/decode.py`) vs read from the frame store, in one process and with `--workers` loader processes.

Prints a table last and writes everything as JSON (`--json`), rewritten after every measurement so that an
interrupted run (a time limit) keeps what it measured.

    python benchmarks/e2e.py --json e2e.json                                       # on a GPU machine, ~5 min on an H100
    python benchmarks/e2e.py --backbones tests/assets/mdmf-micro.json --device cpu --shots 1 --amp off \\
        --steps 2 --episodes-per-step 1 --workers 0 --size 96x64 --clip-frames 40   # CPU smoke check, ~1 min
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_clip(path: Path, frames: int, width: int, height: int, seed: int, fourcc: str = "mp4v") -> None:
    """A bright square moving across a noisy background; PyAV if installed, else OpenCV (GPU images have cv2)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = height // 3
    images = []
    for t in range(frames):
        img = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        x = int(t / max(frames - 1, 1) * (width - side))
        img[height // 3 : height // 3 + side, x : x + side] = (200, 80 + seed % 100, 40)
        images.append(img)
    try:
        import av
    except ImportError:
        import cv2

        out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (width, height))
        for img in images:
            out.write(img[:, :, ::-1].copy())
        out.release()
        return
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for img in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())


def save(report: dict, path: Path | None) -> None:
    """Write the report so far (atomically: a run killed mid-write leaves the previous version)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".partial")
        part.write_text(json.dumps(report, indent=2))
        part.replace(path)


def make_dataset(root: Path, splits: Path, frames: int, width: int, height: int) -> None:
    from mdmf.pipeline.data.decode import VideoReadError, open_video, read_frames

    probe = root.parent / "probe.avi"
    for fourcc in ("mp4v", "MJPG"):  # whichever codec this OpenCV writes and the reader reads back
        write_clip(probe, frames, width, height, 0, fourcc)
        try:
            read_frames(open_video(probe), np.arange(0, frames, max(frames // 8, 1))[:8])
            break
        except VideoReadError as err:
            print(f"generated {fourcc} clips do not decode ({err}); trying the next codec", flush=True)
    else:
        raise SystemExit("cannot write clips that the reader reads back")
    splits.mkdir(parents=True, exist_ok=True)
    for split, classes, per_class in (("train", 5, 10), ("val", 5, 2)):
        names, lines = [f"{split}class{c}" for c in range(classes)], []
        for c, name in enumerate(names):
            for j in range(per_class):
                write_clip(root / name / f"{name}_{j:02d}.avi", frames, width, height, 1000 * c + j, fourcc)
                lines.append(f"{name}\t{name}_{j:02d}")
        (splits / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (splits / f"{split}_classes.txt").write_text("\n".join(names) + "\n")
    (splits / "info.json").write_text(json.dumps({"name": "bench", "layout": "class_folders", "flip": True,
                                                  "extensions": ["avi"], "source": "benchmarks/e2e.py"}))


def short_name(backbone: str) -> str:
    return Path(backbone).stem if backbone.endswith(".json") else backbone


def time_training(store: Path, work: Path, shot: int, amp: str, ckpt: bool, args, device: torch.device) -> dict:
    from mdmf.pipeline.train.e2e import E2EConfig
    from mdmf.pipeline.train.loop import TrainConfig, train

    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    cfg = TrainConfig(stage="e2e", store=str(store), run_dir=str(run), model={"name": "mdmf"}, way=5, shot=shot,
                      queries=5, steps=args.steps, episodes_per_step=args.episodes_per_step, batch_episodes=1,
                      val_every=10**9, val_episodes=50, val_shot=1, progress=False, device=str(device),
                      e2e=E2EConfig(frames_from="store", amp=amp, grad_checkpointing=ckpt, workers=args.workers))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    out = {"status": "ok"}
    try:
        train(cfg)
    except torch.cuda.OutOfMemoryError as err:
        out = {"status": "OOM", "error": str(err).splitlines()[0][:200]}
    except RuntimeError as err:
        if "out of memory" not in str(err):
            raise
        out = {"status": "OOM", "error": str(err).splitlines()[0][:200]}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if out["status"] == "ok":
        seconds = [json.loads(x)["seconds"] for x in (run / "metrics.jsonl").read_text().splitlines()
                   if '"loss"' in x]
        out["s_per_episode"] = (seconds[-1] - seconds[0]) / ((len(seconds) - 1) * args.episodes_per_step)
        out["first_step_s"] = seconds[0]
    shutil.rmtree(run, ignore_errors=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def time_loading(store_path: Path, shot: int, source: str, workers: int, episodes: int) -> float:
    """Seconds per 5-way episode (5 queries per class) of frames, `workers` loader processes (0: this one)."""
    from mdmf.pipeline.features.recipe import extract_config_of, frame_source, preprocessor_of, split_videos
    from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec
    from mdmf.pipeline.features.frames import loader
    from mdmf.pipeline.train.frame_sources import EpisodeFrames
    from mdmf.pipeline.features.store import FeatureStore

    store = FeatureStore.open(store_path)
    ecfg = extract_config_of(store)
    pre = preprocessor_of(store, ecfg)
    data = store.load("train")
    videos = split_videos(store, "train", data, None, ecfg)
    src, _ = frame_source(store, ecfg, pre, source, videos=[videos])
    sampler = EpisodeSampler(data.labels, EpisodeSpec(5, shot, 5), seed=0, views=store.views("train"))
    it = iter(loader(EpisodeFrames(src, videos, sampler, list(range(episodes + 1)), 1), workers))
    next(it)  # worker start-up and the first file opens stay out of the number
    start = time.perf_counter()
    for _ in range(episodes):
        next(it)
    return (time.perf_counter() - start) / episodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="ViT-B-16,RN50", help="comma-separated; random weights")
    ap.add_argument("--shots", default="1,5")
    ap.add_argument("--amp", default="off,bf16", help="comma-separated AMP modes (off, bf16, fp16, auto)")
    ap.add_argument("--checkpointing", default="off,on")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per config (the first is warm-up)")
    ap.add_argument("--episodes-per-step", type=int, default=4)
    ap.add_argument("--workers", type=int, default=8, help="loader processes")
    ap.add_argument("--load-episodes", type=int, default=6, help="episodes timed per loading measurement")
    ap.add_argument("--clip-frames", type=int, default=175, help="frames per generated clip (7 s at 25 fps)")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    args = ap.parse_args()

    from mdmf.pipeline.core.devices import resolve_device
    from mdmf.pipeline.features.extract import run_extract
    from mdmf.pipeline.features.recipe import ExtractConfig

    device = resolve_device(args.device)
    backbones = [b for b in args.backbones.split(",") if b]
    shots = [int(s) for s in args.shots.split(",")]
    amps = [a for a in args.amp.split(",") if device.type == "cuda" or a == "off"]
    ckpts = [c == "on" for c in args.checkpointing.split(",")]
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="mdmf-e2e-bench-"))
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "settings": vars(args) | {"json": str(args.json)}, "training": [],
              "loading": []}
    t0 = time.perf_counter()
    try:
        t = time.perf_counter()
        make_dataset(work / "videos", work / "splits", args.clip_frames, width, height)
        print(f"generated 60 clips ({args.size}, {args.clip_frames} frames) in {time.perf_counter() - t:.1f} s",
              flush=True)
        stores = {}
        for b in backbones:
            t = time.perf_counter()
            stores[b] = work / f"store-{short_name(b)}"
            run_extract(ExtractConfig(dataset="bench", root=str(work / "videos"), splits_dir=str(work / "splits"),
                                      out=str(stores[b]), backbone=b, weights="random", train_views=1,
                                      save_frames=True, splits=("train", "val"), workers=max(args.workers, 0),
                                      device=str(device), progress=False))
            print(f"extracted the store for {short_name(b)} in {time.perf_counter() - t:.1f} s", flush=True)

        # loading first: it is short, and a run stopped at a time limit keeps it
        first = stores[backbones[0]]
        for shot in shots:
            for source in ("decode", "store"):
                r = {"source": source, "shot": shot,
                     "s_per_episode_1proc": time_loading(first, shot, source, 0, args.load_episodes)}
                if args.workers > 0:
                    r[f"s_per_episode_{args.workers}workers"] = time_loading(first, shot, source, args.workers,
                                                                             4 * args.load_episodes)
                report["loading"].append(r)
                save(report, args.json)
                print(json.dumps(r), flush=True)

        for b in backbones:
            for shot in shots:
                for amp in amps:
                    for ckpt in ckpts:
                        r = {"backbone": short_name(b), "shot": shot, "amp": amp, "checkpointing": ckpt}
                        r |= time_training(stores[b], work, shot, amp, ckpt, args, device)
                        report["training"].append(r)
                        save(report, args.json)
                        print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    save(report, args.json)
    print_tables(report, args.workers)


def print_tables(report: dict, workers: int) -> None:
    print(f"\nE2E training, 5-way, 5 queries/class, 1 episode per pass, {report['device']}, torch {report['torch']}")
    print(f"{'backbone':<14} {'shot':>4} {'amp':>5} {'ckpt':>5} {'s/episode':>10} {'peak GiB':>9} {'<=24GiB':>8}")
    for r in report["training"]:
        s = f"{r['s_per_episode']:.3f}" if r["status"] == "ok" else r["status"]
        peak = r.get("peak_gib")
        fits = "" if peak is None else ("yes" if peak <= 24 and r["status"] == "ok" else "no")
        print(f"{r['backbone']:<14} {r['shot']:>4} {r['amp']:>5} {'on' if r['checkpointing'] else 'off':>5} {s:>10} "
              f"{'' if peak is None else f'{peak:.2f}':>9} {fits:>8}")
    print("\nFrame loading per 5-way episode (seconds): decoding (the exact reader) vs the frame store")
    head = f"{'source':<8} {'shot':>4} {'1 process':>10}" + (f" {f'{workers} workers':>11}" if workers else "")
    print(head)
    for r in report["loading"]:
        line = f"{r['source']:<8} {r['shot']:>4} {r['s_per_episode_1proc']:>10.3f}"
        if workers:
            line += f" {r[f's_per_episode_{workers}workers']:>11.3f}"
        print(line)
    print(f"\ntotal {report['seconds']} s")


if __name__ == "__main__":
    main()
