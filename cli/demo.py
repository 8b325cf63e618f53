"""`mdmf demo`: the whole pipeline on the built-in toy data."""

from __future__ import annotations

import typer

from mdmf.cli.app import app, console


@app.command("demo")
def demo(
    steps: int = typer.Option(150, help="head training steps (16 episodes each)"),
    episodes: int = typer.Option(2000, help="test episodes per evaluation"),
    seed: int = typer.Option(0),
    compare: bool = typer.Option(False, "--compare", help="train every head mdmf has and compare them all on the "
                                                          "same test episodes, with paired differences to OTAM"),
    quiet: bool = typer.Option(False),
) -> None:
    """Generate the toy dataset, extract it with the tiny backbone, train the MDMF head, compare it to OTAM."""
    from mdmf.cli.tables import print_extract_summary
    from mdmf.pipeline.apps.demo import DemoConfig, run_demo

    cfg = DemoConfig(steps=steps, episodes=episodes, seed=seed, progress=not quiet)
    if compare:
        from mdmf.cli.compare import print_compare_table
        from mdmf.pipeline.apps.demo_compare import run_demo_compare

        run_demo_compare(cfg, console(), show_extract=print_extract_summary,
                         show_compare=lambda s, c: print_compare_table(
                             s, c, title=f"toy dataset, tiny backbone, 5-way {s['shot']}-shot, {steps} training steps"))
        return
    run_demo(cfg, console(), show_extract=print_extract_summary)
