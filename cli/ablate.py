"""`mdmf ablate`: the paper's ablation tables on the cache, beside the paper's numbers."""

from __future__ import annotations

from pathlib import Path

import typer

from mdmf.cli.app import app


@app.command("ablate")
def ablate(
    dataset: str = typer.Option(..., help="dataset whose store to use (finds cache/<dataset>/<backbone>)"),
    table: int = typer.Option(..., help="paper table: 3 (views x PPS), 4 (distillation x PPS), 5 (condition x direction)"),
    cache: Path = typer.Option(None, help="feature store [default: cache/<dataset>/<backbone>]"),
    backbone: str = typer.Option(None, help="backbone part of the default store path"),
    runs: Path = typer.Option(Path("runs"), help="folder of the cell runs (ablate-<dataset>-t<table>-<cell>)"),
    cell: list[str] = typer.Option([], metavar="NAME", help="only this cell (repeatable) [default: all]"),
    steps: int = typer.Option(300, help="training steps per cell"),
    episodes: int = typer.Option(10_000, help="test episodes per cell"),
    shot: int = typer.Option(None, help="support videos per class [default: the table's, 5]"),
    way: int = typer.Option(5),
    val_every: int = typer.Option(25), val_episodes: int = typer.Option(1000),
    episodes_per_step: int = typer.Option(16, help="episodes whose gradients are accumulated per step"),
    lr: float = typer.Option(None, help="heads' learning rate [default: the head stage's, 1e-4]"),
    baseline: str = typer.Option(None, help="the cell whose paired differences the table gives [default: the first]"),
    seed: int = typer.Option(0), device: str = typer.Option("auto"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train and evaluate every cell of a paper ablation table; done cells are skipped, interrupted ones resumed."""
    from mdmf.cli.app import console as make_console
    from mdmf.cli.tables import print_ablation_table
    from mdmf.pipeline.apps.ablate import AblateConfig, run_ablation

    console = make_console()
    config = AblateConfig(dataset=dataset, table=table, cache=str(cache) if cache else None, backbone=backbone,
                          runs=str(runs), cells=tuple(cell), shot=shot, way=way, steps=steps, episodes=episodes,
                          seed=seed, val_every=val_every, val_episodes=val_episodes,
                          episodes_per_step=episodes_per_step, lr=lr, baseline=baseline, device=device, progress=not quiet)
    run_ablation(config, console, show_table=lambda summary: print_ablation_table(summary, console))
