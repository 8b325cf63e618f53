"""`mdmf check-data`: are all listed videos on disk and readable, before a long extraction starts?"""

from __future__ import annotations

import inspect
from dataclasses import asdict
from pathlib import Path

import numpy as np
import typer
from rich.markup import escape

from mdmf.cli.app import app, check_json_target, human_console, json_option, write_json
from mdmf.cli.tables import print_check_data
from mdmf.pipeline.data.check_data import check_data as run_check
from mdmf.pipeline.data.splits import KNOWN_DATASETS

D = {name: p.default for name, p in inspect.signature(run_check).parameters.items()}  # the function's defaults


@app.command("check-data")
def check_data(
    dataset: str = typer.Option(..., help=f"{', '.join(KNOWN_DATASETS)}, or your own name with --splits"),
    root: Path = typer.Option(..., help="folder holding the videos"),
    splits: Path = typer.Option(None, help="folder of split files [default: the shipped splits/<dataset>; toy: <root>/splits]"),
    split: list[str] = typer.Option(None, metavar="NAME", help="only these splits (repeatable) [default: all in the splits folder]"),
    json_path: str = json_option("the report"),
    workers: int = typer.Option(D["workers"], help="videos opened in parallel"),
    way: int = typer.Option(None, help="check the splits hold episodes of this way [default: as `mdmf train` "
                                       "chooses: 5, or the train split's classes when fewer]"),
    shot: int = typer.Option(1, help="... and this shot"),
    queries: int = typer.Option(None, help="... and these training queries per class [default: as `mdmf train`]"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Find every listed video under --root and read it as extraction does; exit 1 if any is missing or unreadable."""
    from mdmf.pipeline.core.errors import MdmfError
    from mdmf.pipeline.core.limits import EPISODES, check_ranges
    from mdmf.pipeline.core.progress import progress_note
    from mdmf.pipeline.data.splits import load_splits, splits_dir
    from mdmf.pipeline.episodes.sampler import fit_summary, split_fits

    check_ranges({"way": way, "shot": shot, "queries": queries}, EPISODES)  # CLI-only: split_fits' episode
    check_json_target(json_path)
    if not root.is_dir():
        raise MdmfError(f"--root {root}: no such folder; point it at the folder that holds the {dataset} videos")
    loaded = load_splits(splits_dir(dataset, splits, root=root))
    report = run_check(loaded, root, workers=workers, progress=not quiet and json_path != "-",
                       split_names=split or None)
    fits = split_fits({name: split_labels(loaded, name) for name in report.splits}, shot=shot, way=way,
                      queries=queries)
    write_json({**report.to_json(), "episodes": {name: {**asdict(spec), "problem": problem}
                                                 for name, (spec, problem) in fits.items()}}, json_path)
    out = human_console(json_path)
    note = loaded.info.defaults_note(loaded.path)
    if note:
        progress_note(note)
    print_check_data(report, out)
    asked = any(v is not None for v in (way, queries)) or shot != 1  # episodes asked for: a misfit fails
    for name, (spec, problem) in fits.items():  # the minimum per class each split needs, one line each
        line = escape(problem or fit_summary(name, split_labels(loaded, name), spec))
        out.print(line if not problem else f"[red]{line}[/]" if asked else f"[yellow]warning:[/] {line}",
                  highlight=False, soft_wrap=True)
    if not report.ok or (asked and any(problem for _, problem in fits.values())):
        raise typer.Exit(1)


def split_labels(loaded, split: str) -> np.ndarray:
    """The class ids of a loaded split's listed videos."""
    return np.array([e.label for e in loaded.entries[split]], dtype=np.int64)
