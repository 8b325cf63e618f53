"""`mdmf check-data`: are all listed videos on disk and readable, before a long extraction starts?"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from mdmf.cli.app import app


@app.command("check-data")
def check_data(
    dataset: str = typer.Option(..., help="hmdb51, ucf101, kinetics100, ssv2_small, ssv2_full, toy, or your own name with --splits"),
    root: Path = typer.Option(..., help="folder holding the videos"),
    splits: Path = typer.Option(None, help="folder of split files (default: the shipped splits/<dataset>; toy: <root>/splits)"),
    split: list[str] = typer.Option(None, help="only these splits (repeatable; default: all in the splits folder)"),
    json_path: Path = typer.Option(None, "--json", help="also write the report as JSON here"),
    workers: int = typer.Option(2, help="videos opened in parallel"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Find every listed video under --root and read it as extraction does; exit 1 if any is missing or unreadable."""
    from mdmf.pipeline.data.check_data import check_data as run_check
    from mdmf.pipeline.core.errors import MdmfError
    from mdmf.pipeline.data.splits import load_splits, splits_dir

    if not root.is_dir():
        raise MdmfError(f"--root {root}: no such folder; point it at the folder that holds the {dataset} videos")
    report = run_check(load_splits(splits_dir(dataset, splits, root=root)), root, workers=workers,
                       progress=not quiet, split_names=split or None)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    report.print(Console())
    if not report.ok:
        raise typer.Exit(1)
