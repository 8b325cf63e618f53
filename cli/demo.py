"""`mdmf demo`: the whole pipeline on the built-in toy data."""

from __future__ import annotations

import typer

from mdmf.cli.app import app, console


@app.command("demo")
def demo(
    steps: int = typer.Option(150, help="head training steps (16 episodes each)"),
    episodes: int = typer.Option(2000, help="test episodes per evaluation"),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False),
) -> None:
    """Generate the toy dataset, extract it with the tiny backbone, train the MDMF head, compare it to OTAM."""
    from mdmf.cli.tables import print_extract_summary
    from mdmf.pipeline.apps.demo import DemoConfig, run_demo

    run_demo(DemoConfig(steps=steps, episodes=episodes, seed=seed, progress=not quiet), console(),
             show_extract=print_extract_summary)
