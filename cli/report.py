"""`mdmf report`: figures and a short summary of a trained run."""

from __future__ import annotations

from pathlib import Path

import typer

from mdmf.cli.app import app


@app.command("report")
def report(
    run: Path = typer.Option(..., help="a run folder of `mdmf train`"),
    out: Path = typer.Option(None, help="where to write [default: <run>/report]"),
    cache: Path = typer.Option(None, help="feature store [default: the one recorded in the run]"),
    cross_dataset: bool = typer.Option(False, help="with --cache: use the run's heads on another dataset's store "
                                                   "(same encoder and frames; another encoder is always refused)"),
    split: str = typer.Option("test", help="split for accuracy, confusion, t-SNE and attention"),
    way: int = typer.Option(None, help="classes per episode [default: the run's training way]"),
    shot: int = typer.Option(None, help="support videos per class [default: the run's training shot]"),
    episodes: int = typer.Option(10_000, help="episodes to evaluate, as `mdmf eval` (its eval JSON of the run, newer than best.pt, is reused whatever its count)"),
    seed: int = typer.Option(0, help="episode seed"),
    reuse_eval: bool = typer.Option(True, "--reuse-eval/--no-reuse-eval",
                                    help="take the accuracy from the run's eval JSON when one is newer than best.pt "
                                         "(--no-reuse-eval: evaluate again)"),
    tsne_classes: int = typer.Option(10, help="classes shown in the t-SNE figure"),
    tsne_per_class: int = typer.Option(60, help="videos per class in the t-SNE figure"),
    tsne_iterations: int = typer.Option(750, help="t-SNE gradient steps"),
    tsne_backend: str = typer.Option("auto", help="auto (openTSNE, else sklearn, else exact), opentsne, sklearn, exact"),
    attention_examples: int = typer.Option(2, help="queries shown, correct and wrong in turn (MDMF only)"),
    device: str = typer.Option("auto"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Write PNG figures (curves, per-class accuracy, confusion, t-SNE, MMFE attention) and report.md/.html/.json."""
    from mdmf.cli.app import console
    from mdmf.pipeline.apps.report import ReportConfig, make_report

    make_report(ReportConfig(run=str(run), out=str(out) if out else None, cache=str(cache) if cache else None,
                             cross_dataset=cross_dataset,
                             split=split, way=way, shot=shot, episodes=episodes, seed=seed,
                             reuse_eval=reuse_eval, tsne_classes=tsne_classes, tsne_per_class=tsne_per_class,
                             tsne_iterations=tsne_iterations, tsne_backend=tsne_backend,
                             attention_examples=attention_examples, device=device,
                             progress=not quiet), console())
