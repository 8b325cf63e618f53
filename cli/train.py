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
    stage: str = typer.Option("head", help="head: train the heads on cached features; e2e: fine-tune CLIP too"),
    dataset: str = typer.Option(None, help="dataset name (finds its store under cache/)"),
    cache: Path = typer.Option(None, help="feature store path (default cache/<dataset>/<backbone>)"),
    backbone: str = typer.Option(None, help="backbone part of the default store path"),
    name: str = typer.Option(None, help="run name: the run is written to runs/<name> (default <dataset>-<model>-<way>w<shot>s)"),
    runs: Path = typer.Option(Path("runs"), help="folder of runs"),
    model: str = typer.Option("mdmf", help="mdmf or clip-fsar"),
    preset: Path = typer.Option(None, help="JSON file of model/training overrides"),
    set_: list[str] = typer.Option([], "--set", help="model setting key=value (repeatable): views=local, pps=false, distill_condition=text, ..."),
    way: int = typer.Option(5), shot: int = typer.Option(1), queries: int = typer.Option(5, help="query videos per class"),
    steps: int = typer.Option(None, help="optimizer steps (default 300; with --resume: the run's own, or extend it)"),
    episodes_per_step: int = typer.Option(16, help="episodes whose gradients are accumulated per step"),
    batch_episodes: int = typer.Option(16, help="episodes per forward pass"),
    lr: float = typer.Option(None, help="learning rate (default 1e-4 head, 1e-5 e2e)"),
    val_every: int = typer.Option(25, help="validate on the val split every N steps"),
    val_episodes: int = typer.Option(1000), seed: int = typer.Option(0),
    device: str = typer.Option("auto"), threads: int = typer.Option(None, help="torch CPU threads"),
    resume: bool = typer.Option(False, help="continue runs/<name> from its last checkpoint"),
    quiet: bool = typer.Option(False),
) -> None:
    """Train a few-shot model episodically; validation on val picks the best checkpoint."""
    from pipeline.train import TrainConfig, train_head

    if stage != "head":
        raise MdmfError(f"--stage {stage}: only 'head' is available in this version (e2e is in progress)")
    store = cache or default_store(dataset, backbone)
    overrides = {"name": model, **(json.loads(preset.read_text()) if preset else {}), **parse_overrides(set_)}
    run_name = name or f"{dataset or store.parent.name}-{model}-{way}w{shot}s"
    cfg = TrainConfig(stage=stage, store=str(store), run_dir=str(runs / run_name), model=overrides, way=way, shot=shot,
                      queries=queries, steps=steps or 300, episodes_per_step=episodes_per_step, batch_episodes=batch_episodes,
                      lr=lr if lr is not None else 1e-4, val_every=val_every, val_episodes=val_episodes, seed=seed,
                      device=device, threads=threads, progress=not quiet)
    best = train_head(cfg, resume=resume, steps=steps)
    Console().print(f"run {runs / run_name}: best val accuracy {best['val_accuracy']:.2f} % at step {best['step']}")
