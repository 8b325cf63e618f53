"""`mdmf train`: stage two (head on cached features; end to end from frames)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from mdmf.cli.app import app
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.paths import run_name_path
from mdmf.pipeline.features.store import find_store
from mdmf.registry import trainable_models


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


def settle(cfg, resume: bool) -> None:
    """The way, queries and validation left to the data, settled on every rank and said once, by rank 0 (a resumed
    run keeps its saved settings: nothing to say)."""
    from mdmf.pipeline.core.progress import progress_note
    from mdmf.pipeline.train.loop import settle_episodes

    notes = settle_episodes(cfg)
    if not resume and os.environ.get("RANK", "0") == "0":
        for line in notes:
            progress_note(line)


def best_words(best: dict) -> str:
    if best.get("val_accuracy") is None:  # trained without validation
        return f"{best['step']} steps, no validation (best.pt is the last checkpoint)"
    return f"best val accuracy {best['val_accuracy']:.2f} % at step {best['step']}"


@app.command("train")
def train(
    stage: str = typer.Option("head", help="head: train the heads on cached features; e2e: fine-tune CLIP's visual encoder too"),
    dataset: str = typer.Option(None, help="dataset name (finds its store under cache/)"),
    cache: Path = typer.Option(None, help="feature store path [default: the dataset's only store in cache/<dataset>/]"),
    backbone: str = typer.Option(None, help="the store cache/<dataset>/<backbone>, when the dataset has several (e2e: must be the store's)"),
    name: str = typer.Option(None, help="run name: the run is written to runs/<name> [default: <dataset>-<model>-<way>w<shot>s, -e2e added for --stage e2e]"),
    runs: Path = typer.Option(Path("runs"), help="folder of runs"),
    model: str = typer.Option(None, help=f"{', '.join(trainable_models())} (docs/HEADS.md; the authors' settings of a head: --preset reference-<name>) [default: {trainable_models()[0]}]"),
    preset: str = typer.Option(None, help="settings preset: a shipped name (reference, clip-fsar-hmdb51, ...) or a JSON file; explicit options override it"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="model setting key=value (repeatable): views=local, pps=false, distill_condition=text, ..."),
    way: int = typer.Option(None, help="classes per episode [default: 5, or the train split's classes when fewer]"),
    shot: int = typer.Option(None, help="support videos per class [default: 1]"),
    queries: int = typer.Option(None, help="query videos per class [default: 5, or fewer when the classes are small]"),
    val: str = typer.Option(None, help="val: validate on the val split, keep the best step (a store without one trains as none, said once); none: no validation, best.pt is the last checkpoint [default: val]"),
    val_shot: int = typer.Option(None, help="shots of the validation episodes [default: --shot]"),
    steps: int = typer.Option(None, help="optimizer steps; with --resume: the run's own, or more to extend it [default: 300]"),
    episodes_per_step: int = typer.Option(None, help="episodes whose gradients are accumulated per step, over all processes [default: 16; under torchrun the next multiple of the processes]"),
    batch_episodes: int = typer.Option(None, help="episodes per forward pass [default: 16 head, 1 e2e; under torchrun at most each process's share]"),
    lr: float = typer.Option(None, help="heads' learning rate [default: 1e-4 head, 1e-5 e2e]"),
    weight_decay: float = typer.Option(None, help="Adam weight decay of the heads [default: 0]"),
    grad_clip: float = typer.Option(None, help="clip the gradient norm to this [default: no clipping]"),
    val_every: int = typer.Option(None, help="validate on the val split every N steps [default: 25]"),
    val_episodes: int = typer.Option(None, help="validation episodes [default: 1000]"), seed: int = typer.Option(None, help="seed of the episodes and the initial weights [default: 0]"),
    init: Path = typer.Option(None, help="start the heads from this run's best.pt (e.g. a head-stage run)"),
    root: Path = typer.Option(None, help="e2e: folder of the videos [default: where the store was extracted from]"),
    frames_from: str = typer.Option("auto", help="e2e: auto, decode (stage one's exact reader, in workers) or store (the --save-frames store)"),
    augment: str = typer.Option("views", help="e2e: views (the store's train views) or fresh (a new crop per episode; decode)"),
    backbone_lr: float = typer.Option(None, help="e2e: the visual encoder's learning rate [default: 1e-5]"),
    amp: str = typer.Option("auto", help="e2e: auto (bf16 on CUDA, fp16 without bf16, off on CPU), bf16, fp16, off"),
    grad_checkpointing: bool = typer.Option(False, help="e2e: recompute encoder activations in backward (less memory)"),
    bn: str = typer.Option("frozen", help="e2e, RN50: frozen (CLIP's BN statistics) or train (batch statistics)"),
    workers: int = typer.Option(4, help="e2e: frame-loading processes per training process"),
    weights: str = typer.Option(None, help="e2e: check that the store was made with these weights [default: no check]"),
    frames: int = typer.Option(None, help="e2e: check that the store has this many frames per video [default: no check]"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."), threads: int = typer.Option(None, help="torch CPU threads [default: torch's own]"),
    resume: bool = typer.Option(False, help="continue runs/<name> from its last checkpoint"),
    log: list[str] = typer.Option([], "--log", "--tracker", metavar="NAME", help="also log metrics.jsonl's scalars to csv (train.csv, val.csv), tensorboard or wandb (repeatable; extras: pip install 'mdmf[tensorboard]'); under torchrun write --tracker (torchrun takes --log for its own --log-dir)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train a few-shot model episodically; validation on val picks the best checkpoint.

    Several GPUs or nodes: start the same command under torchrun, e.g.
    `torchrun --nproc_per_node 8 --no-python mdmf train --stage e2e ...`.
    """
    from mdmf.pipeline.core.distributed import env_world
    from mdmf.pipeline.train.loop import (DEFAULT_EPISODES_PER_STEP, build_train_config, fit_to_world,
                                          preset_warnings, train as run_training)

    if stage not in ("head", "e2e"):
        raise MdmfError(f"--stage {stage}: use head or e2e")
    # --resume without --dataset/--cache: the run's own store (found where the run recorded it)
    store = cache or (Path() if resume and not dataset else find_store(dataset, backbone))
    options = dict(way=way, shot=shot, queries=queries, val=val, val_shot=val_shot, steps=steps,
                   episodes_per_step=episodes_per_step, batch_episodes=batch_episodes, lr=lr,
                   weight_decay=weight_decay, grad_clip=grad_clip, val_every=val_every, val_episodes=val_episodes,
                   seed=seed, device=device, threads=threads, init=str(init) if init else None, log=log or None)
    given = {"stage": stage, "store": str(store), "run_dir": "", "progress": not quiet,
             **{k: v for k, v in options.items() if v is not None}}
    e2e = {k: v for k, v in dict(root=os.path.abspath(root) if root else None, frames_from=frames_from, augment=augment,
                                 backbone_lr=backbone_lr, amp=amp, grad_checkpointing=grad_checkpointing, bn=bn,
                                 workers=workers, backbone=backbone, weights=weights, frames=frames).items()
           if v is not None}
    overrides = {**({"name": model} if model else {}), **parse_overrides(set_)}
    cfg = build_train_config(preset, given, overrides, e2e)
    if store != Path():  # the run's name holds the way: settled first
        settle(cfg, resume)
    world = env_world()
    if DEFAULT_EPISODES_PER_STEP % world and cfg.episodes_per_step == fit_to_world(stage, None, None, world)[0] \
            and episodes_per_step is None and not resume and os.environ.get("RANK", "0") == "0":
        Console(stderr=True).print(f"[yellow]note:[/] {world} processes: {cfg.episodes_per_step} episodes per optimizer "
                                   f"step ({DEFAULT_EPISODES_PER_STEP} does not split over {world}); give "
                                   "--episodes-per-step to choose", highlight=False, soft_wrap=True)
    run_name = name or (f"{dataset or store.parent.name}-{cfg.model.get('name', 'mdmf')}-{cfg.way}w{cfg.shot}s"
                        + ("-e2e" if stage == "e2e" else ""))
    cfg.run_dir = str(run_name_path(runs, run_name))  # one folder inside --runs, never a path out of it
    for line in preset_warnings(preset, store):
        Console(stderr=True).print(f"[yellow]warning:[/] {line}", highlight=False)
    best = run_training(cfg, resume=resume, steps=steps)
    if best:  # rank 0 of a multi-process run, or the only process
        Console().print(f"run {runs / run_name}: {best_words(best)}")
