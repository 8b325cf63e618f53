"""`mdmf extract`: stage one."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mdmf.cli.app import app, console
from mdmf.pipeline.data.splits import KNOWN_DATASETS


@app.command("extract")
def extract(
    dataset: str = typer.Option(..., help=f"{', '.join(KNOWN_DATASETS)}, or your own name with --splits"),
    root: Path = typer.Option(None, help="folder holding the videos (toy: generated there) [default: data/toy for toy]"),
    splits: Path = typer.Option(None, help="folder of split files [default: the shipped splits/<dataset>]"),
    out: Path = typer.Option(None, help="store path [default: cache/<dataset>/<backbone>]"),
    backbone: str = typer.Option(None, help="tiny, RN50, ViT-B-16 or an open_clip name [default: tiny for toy, else RN50]"),
    weights: str = typer.Option(None, help="openai (open_clip cache), an open_clip tag, a local file, or random [default: the backbone's own: openai, the shipped file for tiny]"),
    frames: int = typer.Option(None, help="frames sampled per video (T) [default: 8]"),
    train_views: int = typer.Option(None, help="augmented samplings per train video [default: 2]"),
    seed: int = typer.Option(None, help="seed of the train augmentation [default: 0]"),
    prompt_template: str = typer.Option(None, help="class prompt; {} is the readable class name [default: 'a photo of {}']"),
    frame_sampling: str = typer.Option(None, help="tsn (the paper's TSN segments) or reference (the authors' code: "
                                                  "jittered linspace) [default: tsn]"),
    normalize: str = typer.Option(None, help="clip (the model's mean/std) or none (pixels in [0, 1], as the authors' "
                                             "code) [default: clip]"),
    crop: str = typer.Option(None, help="tsn (short side S·256/224, crop S, flip where the dataset allows) or reference "
                                        "(the authors': Resize(256), random crop + flip on every dataset, centre crop "
                                        "at test) [default: tsn]"),
    preset: str = typer.Option(None, help="a shipped preset (reference) or a JSON file: its extract section sets "
                                          "these options; options given here override it"),
    split: list[str] = typer.Option(None, metavar="NAME", help="splits to extract (repeatable) [default: train, val, test]"),
    save_frames: bool = typer.Option(None, "--save-frames/--no-save-frames",
                                     help="also store the cropped uint8 frames (for e2e training) [default: no]"),
    chunk_videos: int = typer.Option(None, help="videos per store chunk = unit of resumable work [default: 16]"),
    workers: int = typer.Option(2, help="decoding worker processes"),
    batch_frames: int = typer.Option(256, help="frames per encoder forward pass"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
    shard: str = typer.Option("auto", help="i/n: fill only this shard's part of the store; auto: from a Slurm array "
                                           "(SLURM_ARRAY_TASK_ID/_COUNT) or torchrun (RANK/WORLD_SIZE), else 0/1"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Decode videos, sample frames, encode with CLIP and cache the features (resumable: run again to continue)."""
    import os

    from mdmf.pipeline.core.sharding import resolve_shard
    from mdmf.pipeline.features.extract import run_extract
    from mdmf.pipeline.features.recipe import extract_config
    from mdmf.cli.tables import print_extract_summary

    index, count, source = resolve_shard(shard, os.environ)
    if source:
        Console(stderr=True).print(f"shard {index}/{count} (from {source})", highlight=False, soft_wrap=True)

    cfg = extract_config(
        preset, dataset=dataset, root=str(root) if root else None, splits_dir=str(splits) if splits else None,
        out=str(out) if out else None, backbone=backbone, weights=weights, frames=frames, train_views=train_views,
        seed=seed, prompt_template=prompt_template, frame_sampling=frame_sampling, normalize=normalize, crop=crop,
        splits=tuple(split) if split else None, save_frames=save_frames, chunk_videos=chunk_videos,
        workers=workers, batch_frames=batch_frames, device=device, shard=(index, count), progress=not quiet,
    )
    summary = run_extract(cfg)
    print_extract_summary(summary, console())
