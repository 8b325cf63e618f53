"""`mdmf eval` as a request: a trained run (head or e2e) or an untrained model (OTAM, ProtoNet, CLIP zero-shot) on
seeded test episodes.

`evaluate_request` makes every decision the command needs (the device, which store or frames an e2e run is
evaluated on, the baseline model, where the result is written); `mdmf.cli.evaluate` only parses and renders. The
CLI's option defaults are this dataclass's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from mdmf.config import ModelConfig
from mdmf.pipeline.apps.e2e_eval import evaluate_run_cached, evaluate_run_from_frames
from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.limits import NONNEGATIVE, check_ranges
from mdmf.pipeline.core.paths import check_writable, file_system_errors
from mdmf.pipeline.episodes.sampler import EpisodeSpec, check_episodes_fit, fitted_episode
from mdmf.pipeline.evaluate.episodic import EPISODE_RANGES, EvalConfig, EvalResult, evaluate_split, write_result
from mdmf.pipeline.features.store import FeatureStore, find_store
from mdmf.pipeline.runs import RunDir
from mdmf.registry import MODELS, build_model, untrained_models

BASELINES = Path("runs") / "baselines"  # runs/baselines/<dataset>-<backbone>-<model>/eval/...


@dataclass
class EvalRequest:
    run: str | None = None  # a run folder of `mdmf train` (its best.pt and its store)
    model: str | None = None  # or an untrained model: otam, protonet, clip-zeroshot
    dataset: str | None = None  # with model: the dataset whose default store to use
    cache: str | None = None  # a store instead of the run's (or the default one)
    cross_dataset: bool = False  # a run with --cache: another dataset's store of the same encoder is meant
    backbone: str | None = None  # backbone part of the default store path
    out: str | None = None  # folder of the result files (default: <run>/eval, or runs/baselines/<...>-<model>/eval)
    split: str = "test"
    # The episodes: EvalConfig's settings and defaults (evaluate_request hands over every field the two share).
    way: int | None = None  # None: a run's training way; the baseline's 5, lowered to the split's classes
    shot: int | None = None  # None: a run's training shot; the baseline's 1
    queries: int = EvalConfig.queries
    episodes: int = EvalConfig.episodes
    seed: int = EvalConfig.seed
    batch_episodes: int = EvalConfig.batch_episodes
    reuse: bool = EvalConfig.reuse  # False: the model's full forward per episode (slow; the same predictions)
    from_frames: bool = False  # e2e run: encode the split's frames instead of re-extracting a store
    root: str | None = None  # e2e run: folder of the videos
    workers: int = 2  # e2e run: decoding processes
    device: str = EvalConfig.device
    progress: bool = EvalConfig.progress

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a numeric setting out of its range in one line, before any file (the episode settings: EvalConfig's
        ranges)."""
        check_ranges(self, {**EPISODE_RANGES, "workers": NONNEGATIVE})


def evaluate_request(req: EvalRequest) -> tuple[EvalResult, Path, str]:
    """Evaluate what `req` names; returns (result, where it was written, its title)."""
    if (req.run is None) == (req.model is None):
        raise MdmfError("give either --run runs/<name> or --model otam (with --dataset or --cache)")
    shared = {f.name: getattr(req, f.name) for f in fields(EvalConfig) if f.name in {g.name for g in fields(req)} - {"way", "shot"}}  # settled per run
    cfg = EvalConfig(**{**shared, "device": str(resolve_device(req.device))})
    if req.out is not None:  # a file in the way, a read-only disk: said before the episodes are evaluated
        check_writable(req.out, "--out")
    if req.run is not None:
        result, out, title = _evaluate_run(RunDir(req.run), req, cfg)
    else:
        result, out, title = _evaluate_baseline(req, cfg)
    if req.out is not None:
        out = Path(req.out) / out.name
    with file_system_errors(out.parent, "no result file was written: give --out a folder you can write to (or "
                                        "--json - for the result on standard output)"):
        write_result(result, out, title)
    return result, out, title


def _evaluate_run(run: RunDir, req: EvalRequest, cfg: EvalConfig) -> tuple[EvalResult, Path, str]:
    """A trained run; an e2e run (without --cache) needs features of its own fine-tuned encoder. best.pt is read
    once, here, and the `RunDir` carries it to the e2e evaluation."""
    net, state = run.load_model()
    trained = state["train_config"]
    e2e_run = trained.get("stage") == "e2e" and req.cache is None
    if req.from_frames and not e2e_run:
        raise MdmfError("--from-frames is for runs of `mdmf train --stage e2e` (without --cache)")
    store = None if e2e_run else run.open_store(req.cache, cross_dataset=req.cross_dataset)
    # the run's episodes unless told otherwise: the way and shot it was trained at, as `mdmf report --run` does
    cfg = replace(cfg, way=req.way or int(trained["way"]), shot=req.shot or int(trained["shot"]))
    if store is not None:
        check_episodes_fit(store.labels(req.split), EpisodeSpec(cfg.way, cfg.shot, cfg.queries), req.split)
    out = run.eval_path(req.split, cfg.way, cfg.shot, req.seed, frames=req.from_frames)
    if req.out is None:
        check_writable(out.parent, "--run")
    title = f"{run.name} ({net.config.name}{', e2e' if e2e_run else ''}) on {req.split}"
    if e2e_run:
        kw = dict(root=req.root, workers=req.workers)
        result = (evaluate_run_from_frames(run, req.split, cfg, **kw) if req.from_frames
                  else evaluate_run_cached(run, req.split, cfg, progress=req.progress, **kw))
    else:
        result = evaluate_split(net, store, req.split, cfg)
    return result, out, title


def _evaluate_baseline(req: EvalRequest, cfg: EvalConfig) -> tuple[EvalResult, Path, str]:
    """An untrained model (`needs_training` False: the OTAM baseline) on a store's raw CLIP features, written under
    runs/baselines/."""
    untrained = ", ".join(untrained_models())
    if req.model not in MODELS:
        raise MdmfError(f"--model {req.model}: unknown model; without a run use one of: {untrained}")
    store = FeatureStore.open(req.cache or find_store(req.dataset, req.backbone))
    labels = store.labels(req.split)
    cfg = replace(cfg, shot=req.shot or 1)
    cfg = replace(cfg, way=req.way or fitted_episode(labels, cfg.shot, None, cfg.queries)[0])
    check_episodes_fit(labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), req.split)
    net = build_model(ModelConfig(name=req.model, dim=store.meta.dim, frames=store.meta.frames))
    if net.needs_training:
        raise MdmfError(f"--model {req.model} needs training: train it with `mdmf train --model {req.model}` and "
                        f"evaluate the run with --run; without a run use one of: {untrained}")
    identity = store.meta.identity
    out = RunDir(BASELINES / f"{identity['dataset']}-{identity['backbone']}-{req.model}").eval_path(
        req.split, cfg.way, cfg.shot, req.seed)
    if req.out is None:
        check_writable(out.parent, "--out (default)")
    return evaluate_split(net, store, req.split, cfg), out, (f"{req.model} (untrained) on raw CLIP "
                                                                  f"features ({store.path}) on {req.split}")
