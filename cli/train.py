"""`mdmf train`: stage two (head on cached features; end to end from frames)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from cli.app import app
from pipeline.errors import MdmfError


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` pairs of model settings; values are parsed as JSON when they can be (numbers, true/false)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise MdmfError(f"--set {pair!r}: write model settings as key=value, e.g. --set views=local")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def default_store(dataset: str | None, backbone: str | None) -> Path:
    if not dataset:
        raise MdmfError("give --dataset (the store is then found at cache/<dataset>/<backbone>) or --cache PATH")
    return Path("cache") / dataset / (backbone or ("tiny" if dataset == "toy" else "RN50"))


@app.command("train")
def train(
    stage: str = typer.Option("head", help="head: train the heads on cached features; e2e: fine-tune CLIP's visual encoder too"),
    dataset: str = typer.Option(None, help="dataset name (finds its store under cache/)"),
    cache: Path = typer.Option(None, help="feature store path (default cache/<dataset>/<backbone>)"),
    backbone: str = typer.Option(None, help="backbone part of the default store path (e2e: must be the store's)"),
    name: str = typer.Option(None, help="run name: the run is written to runs/<name> (default <dataset>-<model>-<way>w<shot>s[-e2e])"),
    runs: Path = typer.Option(Path("runs"), help="folder of runs"),
    model: str = typer.Option("mdmf", help="mdmf or clip-fsar"),
    preset: Path = typer.Option(None, help="JSON file of model/training overrides"),
    set_: list[str] = typer.Option([], "--set", help="model setting key=value (repeatable): views=local, pps=false, distill_condition=text, ..."),
    way: int = typer.Option(5), shot: int = typer.Option(1), queries: int = typer.Option(5, help="query videos per class"),
    steps: int = typer.Option(None, help="optimizer steps (default 300; with --resume: the run's own, or extend it)"),
    episodes_per_step: int = typer.Option(16, help="episodes whose gradients are accumulated per step (over all processes)"),
    batch_episodes: int = typer.Option(None, help="episodes per forward pass (default 16 head, 1 e2e)"),
    lr: float = typer.Option(None, help="heads' learning rate (default 1e-4 head, 1e-5 e2e)"),
    grad_clip: float = typer.Option(None, help="clip the gradient norm to this"),
    val_every: int = typer.Option(25, help="validate on the val split every N steps"),
    val_episodes: int = typer.Option(1000), seed: int = typer.Option(0),
    init: Path = typer.Option(None, help="start the heads from this run's best.pt (e.g. a head-stage run)"),
    root: Path = typer.Option(None, help="e2e: folder of the videos (default: where the store was extracted from)"),
    frames_from: str = typer.Option("auto", help="e2e: auto, decode (decord in workers) or store (the --save-frames store)"),
    augment: str = typer.Option("views", help="e2e: views (the store's train views) or fresh (a new crop per episode; decode)"),
    backbone_lr: float = typer.Option(1e-5, help="e2e: the visual encoder's learning rate"),
    amp: str = typer.Option("auto", help="e2e: auto (bf16 on CUDA, fp16 without bf16, off on CPU), bf16, fp16, off"),
    grad_checkpointing: bool = typer.Option(False, help="e2e: recompute encoder activations in backward (less memory)"),
    bn: str = typer.Option("frozen", help="e2e, RN50: frozen (CLIP's BN statistics) or train (batch statistics)"),
    workers: int = typer.Option(4, help="e2e: frame-loading processes per training process"),
    weights: str = typer.Option(None, help="e2e: check that the store was made with these weights"),
    frames: int = typer.Option(None, help="e2e: check that the store has this many frames per video"),
    device: str = typer.Option("auto"), threads: int = typer.Option(None, help="torch CPU threads"),
    resume: bool = typer.Option(False, help="continue runs/<name> from its last checkpoint"),
    quiet: bool = typer.Option(False),
) -> None:
    """Train a few-shot model episodically; validation on val picks the best checkpoint.

    Several GPUs or nodes: start the same command under torchrun, e.g.
    `torchrun --nproc_per_node 8 -m cli.main train --stage e2e ...`.
    """
    from pipeline.e2e import E2EConfig
    from pipeline.train import TrainConfig, train as run_training

    if stage not in ("head", "e2e"):
        raise MdmfError(f"--stage {stage}: use head or e2e")
    store = cache or default_store(dataset, backbone)
    overrides = {"name": model, **(json.loads(preset.read_text()) if preset else {}), **parse_overrides(set_)}
    run_name = name or f"{dataset or store.parent.name}-{model}-{way}w{shot}s" + ("-e2e" if stage == "e2e" else "")
    e2e = None
    if stage == "e2e":
        e2e = E2EConfig(root=str(root) if root else None, frames_from=frames_from, augment=augment,
                        backbone_lr=backbone_lr, amp=amp, grad_checkpointing=grad_checkpointing, bn=bn,
                        workers=workers, backbone=backbone, weights=weights, frames=frames)
    cfg = TrainConfig(stage=stage, store=str(store), run_dir=str(runs / run_name), model=overrides, way=way, shot=shot,
                      queries=queries, steps=steps or 300, episodes_per_step=episodes_per_step,
                      batch_episodes=batch_episodes, lr=lr, grad_clip=grad_clip, val_every=val_every,
                      val_episodes=val_episodes, seed=seed, device=device, threads=threads, progress=not quiet,
                      init=str(init) if init else None, e2e=e2e)
    best = run_training(cfg, resume=resume, steps=steps)
    if best:  # rank 0 of a multi-process run, or the only process
        Console().print(f"run {runs / run_name}: best val accuracy {best['val_accuracy']:.2f} % at step {best['step']}")
