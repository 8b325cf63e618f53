"""`mdmf eval`: few-shot accuracy on the test split with a 95% interval."""

from __future__ import annotations

from pathlib import Path

import typer

from mdmf.cli.app import app, check_json_target, human_console, json_option, write_json
from mdmf.pipeline.apps.evaluate_run import EvalRequest
from mdmf.registry import untrained_models

D = EvalRequest  # the defaults: one value, in the dataclass the command fills


@app.command("eval")
def eval_(
    run: Path = typer.Option(None, help="a run folder of `mdmf train` (uses its best checkpoint and its store)"),
    dataset: str = typer.Option(None, help="with --model otam: the dataset whose store to use (its only one)"),
    cache: Path = typer.Option(None, help="feature store [default: the run's store, or the dataset's only store]"),
    cross_dataset: bool = typer.Option(False, help="with --cache: use the run's heads on another dataset's store "
                                                   "(same encoder and frames; another encoder is always refused)"),
    backbone: str = typer.Option(None, help="the store cache/<dataset>/<backbone>, when the dataset has several"),
    model: str = typer.Option(None, help=f"evaluate an untrained model instead of a run: {', '.join(untrained_models())}"),
    out: Path = typer.Option(None, help="folder for the result files [default: <run>/eval; with --model NAME "
                                        "runs/baselines/<dataset>-<backbone>-NAME/eval]"),
    split: str = typer.Option(D.split, help="split to evaluate on"),
    way: int = typer.Option(D.way, help="classes per episode [default: the run's training way; --model otam: 5, "
                                        "or the split's classes when fewer]"),
    shot: int = typer.Option(D.shot, help="support videos per class [default: the run's training shot; otam: 1]"),
    queries: int = typer.Option(D.queries, help="query videos per class"),
    episodes: int = typer.Option(D.episodes), seed: int = typer.Option(D.seed),
    batch_episodes: int = typer.Option(D.batch_episodes),
    reuse: bool = typer.Option(D.reuse, "--reuse/--no-reuse",
                               help="compute the episode-independent work once (--no-reuse: the full model per "
                                    "episode; slow, for checking: the same predictions)"),
    from_frames: bool = typer.Option(D.from_frames, help="e2e run: encode the split's frames directly instead of "
                                                         "re-extracting a store"),
    root: Path = typer.Option(None, help="e2e run: folder of the videos [default: where the store was extracted from]"),
    workers: int = typer.Option(D.workers, help="e2e run: decoding processes"),
    json_path: str = json_option("the result"),
    device: str = typer.Option(D.device), quiet: bool = typer.Option(False),
) -> None:
    """Evaluate a trained run (or the untrained OTAM baseline) on seeded few-shot episodes."""
    from mdmf.cli.tables import print_eval_result
    from mdmf.pipeline.apps.evaluate_run import evaluate_request

    check_json_target(json_path)
    text = lambda p: str(p) if p else None  # noqa: E731
    request = EvalRequest(run=text(run), model=model, dataset=dataset, cache=text(cache), backbone=backbone,
                          cross_dataset=cross_dataset,
                          out=text(out), split=split, way=way, shot=shot, queries=queries, episodes=episodes,
                          seed=seed, batch_episodes=batch_episodes, reuse=reuse, from_frames=from_frames,
                          root=text(root), workers=workers, device=device,
                          progress=not quiet and json_path != "-")  # `--json -`: standard output is the JSON only
    result, written, title = evaluate_request(request)
    write_json(result.to_json(), json_path)
    print_eval_result(result, title, written, human_console(json_path))
