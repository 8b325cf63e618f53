"""`mdmf compare`: runs and untrained models on identical episodes, with paired differences to a baseline."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mdmf.cli.app import app, check_json_target, human_console, json_option, write_json
from mdmf.pipeline.apps.compare import CompareConfig
from mdmf.pipeline.apps.compare_output import difference_cells, header_line
from mdmf.pipeline.evaluate.episodic import EvalConfig

D = EvalConfig  # the defaults of the episodes: the evaluator's


def print_compare_table(summary: dict, console: Console, title: str = "methods on identical episodes") -> None:
    table = Table(title=title)
    for col in ("method", "model", "accuracy %", f"Δ to {summary['baseline']} (pp)", "p"):
        table.add_column(col, justify="left" if col in ("method", "model") else "right")
    for row in summary["methods"]:
        table.add_row(row["name"], row["model"], f"{row['accuracy']:.2f} ± {row['ci95']:.2f}", *difference_cells(row))
    console.print(table)
    console.print(f"[dim]{header_line(summary)}[/]", highlight=False)


@app.command("compare")
def compare(
    run: list[Path] = typer.Option([], metavar="PATH", help="a run folder of `mdmf train` or `mdmf import` (repeatable)"),
    model: list[str] = typer.Option([], metavar="NAME", help="an untrained model evaluated on the store's features, e.g. otam "
                                             "(repeatable)"),
    cache: Path = typer.Option(None, help="the store every method is evaluated on (its runs must all have been "
                                          "trained on it, and e2e runs are evaluated on the same videos "
                                          "re-extracted with their encoder) [default: the first run's]"),
    dataset: str = typer.Option(None, help="with only --model: the dataset whose default store to use"),
    backbone: str = typer.Option(None, help="backbone part of the default store path"),
    baseline: str = typer.Option(None, help="the method the differences are taken to (a run folder's name or a "
                                            "model's) [default: the first --model, else the first --run]"),
    split: str = typer.Option(CompareConfig.split), way: int = typer.Option(D.way), shot: int = typer.Option(D.shot),
    queries: int = typer.Option(D.queries, help="query videos per class"),
    episodes: int = typer.Option(D.episodes), seed: int = typer.Option(D.seed),
    batch_episodes: int = typer.Option(D.batch_episodes),
    out: Path = typer.Option(None, help="path stem of the .json and .md written [default: "
                                        "runs/compare-<split>_<way>w<shot>s_seed<seed>]"),
    root: Path = typer.Option(None, help="e2e runs: folder of the videos; their split is re-extracted with the "
                                         "run's encoder [default: where the store was extracted from]"),
    json_path: str = json_option("the comparison (with per-episode accuracies)"),
    device: str = typer.Option(D.device), quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Evaluate runs and untrained models on the same episodes; accuracy ± 95 % and paired differences."""
    from mdmf.pipeline.apps.compare import run_compare

    check_json_target(json_path)
    episodes_cfg = EvalConfig(way=way, shot=shot, queries=queries, episodes=episodes, seed=seed,
                              batch_episodes=batch_episodes, device=device, progress=not quiet and json_path != "-")
    cfg = CompareConfig(runs=tuple(str(r) for r in run), models=tuple(model), cache=str(cache) if cache else None,
                        dataset=dataset, backbone=backbone, baseline=baseline, split=split, episodes=episodes_cfg,
                        out=str(out) if out else None, root=str(root) if root else None)
    summary, written = run_compare(cfg)
    write_json(summary, json_path)
    console = human_console(json_path)
    print_compare_table(summary, console)
    console.print(f"written to {written}.json and {written}.md", highlight=False)
