"""`mdmf splits`: write a splits folder from a folder of class folders (a dataset in one step)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer
from rich.console import Console

from mdmf.cli.app import app
from mdmf.pipeline.data.make_splits import make_splits

D = {name: p.default for name, p in inspect.signature(make_splits).parameters.items()}  # the function's defaults


@app.command("splits")
def splits(
    root: Path = typer.Option(..., help="folder holding one folder of videos per class"),
    out: Path = typer.Option(..., help="the splits folder to write (then: --splits OUT)"),
    val: str = typer.Option(D["val"], help="val classes: a count (3) or a fraction of the classes (0.2); 0: no val split"),
    test: str = typer.Option(D["test"], help="test classes: a count or a fraction"),
    seed: int = typer.Option(D["seed"], help="shuffles the classes before they are divided"),
    flip: bool = typer.Option(D["flip"], "--flip/--no-flip",
                              help="allow flip augmentation (--no-flip when left/right is part of the labels)"),
    force: bool = typer.Option(D["force"], help="replace split files already in --out"),
) -> None:
    """Divide the classes of --root into train/val/test (seeded) and write the split files check-data reads."""
    from mdmf.pipeline.core.limits import NONNEGATIVE, check_ranges

    check_ranges({"seed": seed}, {"seed": NONNEGATIVE})
    chosen = make_splits(root, out, val=val, test=test, seed=seed, flip=flip, force=force)
    console = Console()
    for split, classes in chosen.items():
        console.print(f"{split}: {len(classes)} classes ({', '.join(classes)})", highlight=False, soft_wrap=True)
    console.print(f"wrote {out} (flip {'on' if flip else 'off'}, in info.json); next: mdmf check-data --dataset "
                  f"{Path(root).resolve().name} --root {root} --splits {out}", highlight=False, soft_wrap=True)
