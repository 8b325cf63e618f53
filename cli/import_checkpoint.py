"""`mdmf import`: a checkpoint of the authors' code (CLIP-FSAR, CLIP-MDMF) as an mdmf run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from mdmf.cli.app import Command, app, check_json_target, human_console, json_option, write_json


@app.command("import", cls=Command)
def import_(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help="a checkpoint saved by the CLIP-FSAR or CLIP-MDMF code (.pyth, .pt)"),
    out: Path = typer.Option(..., help="the run folder to write (runs/<name>)"),
    cache: Path = typer.Option(None, help="the feature store the run is bound to, extracted with the backbone the "
                                          "authors started from (needed for a fine-tuned visual encoder)"),
    head: str = typer.Option(None, help="the mdmf head, when the checkpoint has no config naming the authors' head"),
    preset: str = typer.Option(None, help="model settings applied last (a shipped preset or a JSON file)"),
    ema: bool = typer.Option(False, help="CLIP-FSAR: the EMA weights (model_ema_state) instead of model_state"),
    backbone: bool = typer.Option(True, "--backbone/--no-backbone",
                                  help="keep a fine-tuned visual encoder as visual.pt (--no-backbone: the head only)"),
    json_path: str = json_option("what was imported"),
) -> None:
    """Turn an authors' checkpoint into a run folder; then `mdmf eval --run` evaluates it with mdmf's evaluator."""
    from mdmf.pipeline.apps.import_authors import ImportRequest, import_checkpoint

    check_json_target(json_path)
    done = import_checkpoint(ImportRequest(checkpoint=str(checkpoint), out=str(out),
                                           cache=str(cache) if cache else None, head=head, preset=preset, ema=ema,
                                           backbone=backbone))
    write_json(done, json_path)
    console = human_console(json_path)
    what = "head and fine-tuned visual encoder" if done["visual_encoder"] else "head"
    console.print(f"imported the {what} of {done['authors_head'] or done['model']} ({checkpoint}) as an mdmf "
                  f"{done['model']} run in {out}", highlight=False)
    if done["ignored"]:
        console.print(f"[dim]left out (no counterpart in mdmf): {', '.join(done['ignored'])}[/]", highlight=False)
    console.print(f"evaluate it: mdmf eval --run {out}" + ("" if cache else " --cache STORE"), highlight=False)
