"""`mdmf check-data`: are all listed videos on disk and readable, before a long extraction starts?"""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from mdmf.cli.app import app, check_json_target, human_console, json_option, write_json
from mdmf.cli.tables import print_check_data
from mdmf.pipeline.data.check_data import check_data as run_check
from mdmf.pipeline.data.splits import KNOWN_DATASETS

D = {name: p.default for name, p in inspect.signature(run_check).parameters.items()}  # the function's defaults


@app.command("check-data")
def check_data(
    dataset: str = typer.Option(..., help=f"{', '.join(KNOWN_DATASETS)}, or your own name with --splits"),
    root: Path = typer.Option(..., help="folder holding the videos"),
    splits: Path = typer.Option(None, help="folder of split files (default: the shipped splits/<dataset>; toy: <root>/splits)"),
    split: list[str] = typer.Option(None, help="only these splits (repeatable; default: all in the splits folder)"),
    json_path: str = json_option("the report"),
    workers: int = typer.Option(D["workers"], help="videos opened in parallel"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Find every listed video under --root and read it as extraction does; exit 1 if any is missing or unreadable."""
    from mdmf.pipeline.core.errors import MdmfError
    from mdmf.pipeline.data.splits import load_splits, splits_dir

    check_json_target(json_path)
    if not root.is_dir():
        raise MdmfError(f"--root {root}: no such folder; point it at the folder that holds the {dataset} videos")
    report = run_check(load_splits(splits_dir(dataset, splits, root=root)), root, workers=workers,
                       progress=not quiet and json_path != "-", split_names=split or None)
    write_json(report.to_json(), json_path)
    print_check_data(report, human_console(json_path))
    if not report.ok:
        raise typer.Exit(1)
