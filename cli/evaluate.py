"""`mdmf eval`: few-shot accuracy on the test split with a 95% interval."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mdmf.cli.app import app


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
    from mdmf.cli.tables import print_eval_result
    from mdmf.pipeline.apps.evaluate_run import EvalRequest, evaluate_request

    text = lambda p: str(p) if p else None  # noqa: E731
    request = EvalRequest(run=text(run), model=model, dataset=dataset, cache=text(cache), backbone=backbone,
                          split=split, way=way, shot=shot, queries=queries, episodes=episodes, seed=seed,
                          batch_episodes=batch_episodes, reuse=not no_reuse, from_frames=from_frames, root=text(root),
                          workers=workers, json_path=text(json_path), device=device, progress=not quiet)
    result, out, title = evaluate_request(request)
    print_eval_result(result, title, out, Console())
