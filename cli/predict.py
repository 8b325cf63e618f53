"""`mdmf predict`: classify videos against a folder of labelled examples."""

from __future__ import annotations

from pathlib import Path

import typer

from mdmf.cli.app import Command, app, check_json_target, human_console, json_option, write_json
from mdmf.cli.tables import print_prediction
from mdmf.pipeline.apps.predict import PredictConfig

D = PredictConfig  # the defaults: one value, in the dataclass the command fills


@app.command("predict", cls=Command)
def predict(
    support: Path = typer.Option(..., help="folder with one sub-folder of 1-5 example videos per class (>= 2 classes)"),
    query: list[Path] = typer.Option(None, metavar="VIDEO", help="video to classify (repeatable); more videos may follow it"),
    more: list[Path] = typer.Argument(None, metavar="VIDEO", help="further videos to classify"),
    run: Path = typer.Option(None, help="a run folder of `mdmf train` [default: the untrained OTAM baseline]"),
    cache: Path = typer.Option(None, help="with --run: its feature store [default: the path recorded in the run]"),
    backbone: str = typer.Option(None, help="without --run: tiny, RN50, ViT-B-16, an open_clip name or a model "
                                            "config .json; with --run: only the .json a store was made from "
                                            "[default: tiny without --run, the run's store's with it]"),
    weights: str = typer.Option(None, help="without --run: the backbone's weights; with --run: where the store's "
                                           "weights file is now (its hash must match) [default: the backbone's own]"),
    frames: int = typer.Option(D.frames, help="without --run: frames sampled per video (T)"),
    prompt_template: str = typer.Option(D.prompt_template, help="without --run: class prompt; {} is the readable name"),
    pps: str = typer.Option(None, help="query prompt choice: sample or argmax [default: the model's own, as in eval]"),
    top: int = typer.Option(5, help="classes shown per query (JSON always has all)"),
    seed: int = typer.Option(D.seed, help="seed of PPS sampling"),
    json_path: str = json_option("every query's full ranking"),
    device: str = typer.Option(D.device),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Rank the support classes for each query video, with probabilities (softmax of the logits)."""
    from mdmf.pipeline.apps.predict import predict as run_predict
    from mdmf.pipeline.core.limits import COUNT, check_ranges

    check_ranges({"top": top}, {"top": COUNT})  # shown rows only: not a PredictConfig setting
    check_json_target(json_path)
    cfg = PredictConfig(support=str(support), queries=[str(q) for q in [*(query or []), *(more or [])]], run=str(run) if run else None,
                        cache=str(cache) if cache else None,
                        backbone=backbone, weights=weights, frames=frames, prompt_template=prompt_template, pps=pps,
                        seed=seed, device=device, progress=not quiet and json_path != "-")
    result = run_predict(cfg)
    write_json(result.to_json(), json_path)
    print_prediction(result, top, human_console(json_path))
