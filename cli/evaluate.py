"""`mdmf eval`: few-shot accuracy on the test split with a 95% interval."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mdmf.cli.app import app
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.datasets import default_store_path


@app.command("eval")
def eval_(
    run: Path = typer.Option(None, help="a run folder of `mdmf train` (uses its best checkpoint and its store)"),
    dataset: str = typer.Option(None, help="with --model otam: the dataset whose store to use"),
    cache: Path = typer.Option(None, help="feature store (default: the run's store, or cache/<dataset>/<backbone>)"),
    backbone: str = typer.Option(None, help="backbone part of the default store path"),
    model: str = typer.Option(None, help="evaluate an untrained model instead of a run: otam"),
    split: str = typer.Option("test", help="split to evaluate on"),
    way: int = typer.Option(5), shot: int = typer.Option(1), queries: int = typer.Option(1, help="query videos per class"),
    episodes: int = typer.Option(10_000), seed: int = typer.Option(0),
    batch_episodes: int = typer.Option(500), no_reuse: bool = typer.Option(False, help="run the full model per episode (slow; for checking)"),
    from_frames: bool = typer.Option(False, help="e2e run: encode the split's frames directly instead of re-extracting a store"),
    root: Path = typer.Option(None, help="e2e run: folder of the videos (default: where the store was extracted from)"),
    workers: int = typer.Option(2, help="e2e run: decoding processes"),
    json_path: Path = typer.Option(None, "--json", help="also write the result JSON here"),
    device: str = typer.Option("auto"), quiet: bool = typer.Option(False),
) -> None:
    """Evaluate a trained run (or the untrained OTAM baseline) on seeded few-shot episodes."""
    from mdmf.config import ModelConfig
    from mdmf.pipeline.core.devices import resolve_device
    from mdmf.registry import build_model
    from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split, load_run_model, write_result
    from mdmf.pipeline.features.store import FeatureStore

    if (run is None) == (model is None):
        raise MdmfError("give either --run runs/<name> or --model otam (with --dataset or --cache)")
    dev = str(resolve_device(device))
    cfg = EvalConfig(way=way, shot=shot, queries=queries, episodes=episodes, seed=seed, batch_episodes=batch_episodes,
                     reuse=not no_reuse, device=dev, progress=not quiet)
    e2e_run = False
    if run is not None:
        net, state = load_run_model(run)
        e2e_run = state["train_config"].get("stage") == "e2e" and cache is None
        if from_frames and not e2e_run:
            raise MdmfError("--from-frames is for runs of `mdmf train --stage e2e` (without --cache)")
        store = None if e2e_run else FeatureStore.open(cache or state["train_config"]["store"])
        out = run / "eval" / f"{split}_{way}w{shot}s_seed{seed}{'_frames' if from_frames else ''}.json"
        title = f"{run.name} ({net.config.name}{', e2e' if e2e_run else ''}) on {split}"
    else:
        store = FeatureStore.open(cache or default_store_path(dataset, backbone))
        if model != "otam":
            raise MdmfError(f"--model {model}: only the untrained baseline 'otam' can be evaluated without a run")
        net = build_model(ModelConfig(name="otam", dim=int(store.meta["dim"]), frames=int(store.meta["frames"])))
        out = Path("runs") / "baselines" / f"{store.meta['identity']['dataset']}-{store.meta['identity']['backbone']}-otam" / f"{split}_{way}w{shot}s_seed{seed}.json"
        title = f"OTAM on raw CLIP features ({store.path}) on {split}"
    if e2e_run:  # its heads need features of its own fine-tuned encoder
        from mdmf.pipeline.apps.e2e_eval import evaluate_run_cached, evaluate_run_from_frames

        kw = dict(root=str(root) if root else None, workers=workers)
        result = (evaluate_run_from_frames(run, split, cfg, **kw) if from_frames
                  else evaluate_run_cached(run, split, cfg, progress=not quiet, **kw))
    else:
        result = evaluate_split(net, store, split, cfg)
    write_result(result, out, title)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.to_json(), indent=2))
    console = Console()
    table = Table(title=title)
    table.add_column("class")
    table.add_column("accuracy %", justify="right")
    for name, acc in sorted(result.per_class.items()):
        table.add_row(name, f"{acc:.2f}")
    console.print(table)
    console.print(f"[bold]{way}-way {shot}-shot: {result.accuracy:.2f} ± {result.ci95:.2f} %[/] "
                  f"({episodes} episodes, seed {seed}, {result.seconds:.1f} s); written to {out}")
