"""`mdmf compare`: several methods evaluated on identical episodes, with paired differences to a baseline.

Every method (a trained run, or an untrained model such as `otam` built on the store's features) is evaluated by
`evaluate.episodic.evaluate` on one split of one store with one `EvalConfig` (an e2e run, as `mdmf eval --run` does
it, on the same videos re-extracted with its fine-tuned encoder, unless `--cache` names one store for all): episode `i` is a pure function of
`(seed, i)` (`episodes.sampler`), and the PPS draws of a batch of episodes come from a generator seeded the same way,
so all methods see the same classes, support and query videos and the same prompt draws. What a paper's table cannot
give is then possible: each method's difference to the baseline measured episode by episode.

The statistics, over the n episodes (per-episode accuracy a_i of the method and b_i of the baseline, d_i = a_i - b_i):

* accuracy ± 95 % interval: mean(a) ± 1.96 · sd(a) / √n, as `mdmf eval` reports it;
* paired difference: mean(d) ± 1.96 · sd(d) / √n (sd with n - 1);
* p-value: the two-sided paired t-test of mean(d) = 0, t = mean(d) / (sd(d) / √n), read from the normal
  distribution (p = erfc(|t| / √2)); with the protocol's 10,000 episodes the t and normal tails agree to far better
  than the digits printed, and below 30 episodes the p-value is optimistic (the summary says how many episodes).
  All d_i equal (sd 0): p = 1 when they are all 0, else 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.evaluate.episodic import EvalConfig

TEST_NAME = "paired t-test on per-episode accuracies (normal approximation of t)"
Z95 = 1.96


@dataclass
class Method:
    """One column of the comparison: a display name, where it comes from, and the model to evaluate."""

    name: str
    source: str  # the run folder, or "untrained"
    model: object  # a FewShotMethod
    store: object = None  # its features' store when not the comparison's (an e2e run: its own encoder's features)


@dataclass
class CompareConfig:
    """What to compare and on which episodes: `episodes` is the evaluator's own config (way, shot, queries, episode
    count, seed, batch size, device), one for all methods."""

    runs: tuple[str, ...] = ()  # run folders of `mdmf train` (or `mdmf import`)
    models: tuple[str, ...] = ()  # untrained models (needs_training False in MODELS), e.g. otam
    cache: str | None = None  # the store all methods are evaluated on (default: the first run's store)
    dataset: str | None = None  # with only untrained models: the dataset whose default store to use
    backbone: str | None = None
    baseline: str | None = None  # a method's name; default: the first untrained model, else the first run
    split: str = "test"
    episodes: EvalConfig = field(default_factory=EvalConfig)
    out: str | None = None  # path stem of the .json and .md written (default: runs/compare-<split>_…)
    root: str | None = None  # e2e runs: the videos' folder, when they moved since extraction


def paired_difference(method: np.ndarray, baseline: np.ndarray) -> dict:
    """Per-episode accuracies (fractions or percent, the result is in the same unit) `(n,)` of a method and of the
    baseline on the same episodes -> {"mean", "ci95", "p_value", "t"} of their difference (see the module)."""
    d = np.asarray(method, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    n = d.size
    if n < 2:
        raise MdmfError("a paired difference needs at least 2 episodes; raise --episodes")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return {"mean": mean, "ci95": 0.0, "p_value": 1.0 if mean == 0.0 else 0.0,
                "t": 0.0 if mean == 0.0 else math.copysign(math.inf, mean)}
    t = mean / (sd / math.sqrt(n))
    return {"mean": mean, "ci95": Z95 * sd / math.sqrt(n), "p_value": math.erfc(abs(t) / math.sqrt(2.0)), "t": t}


def accuracy_interval(per_episode: np.ndarray) -> tuple[float, float]:
    """(mean, 95 % half-width) of per-episode accuracies, as `EvalResult` computes them."""
    a = np.asarray(per_episode, dtype=np.float64)
    sd = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return float(a.mean()), Z95 * sd / math.sqrt(a.size)


def episodes_sha256(labels: np.ndarray, cfg) -> str:
    """A hash of the episodes (classes, support and query videos) an `EvalConfig` draws from a split's labels: two
    comparisons with the same hash saw the same episodes."""
    from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec

    sampler = EpisodeSampler(labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), seed=cfg.seed, views=1)
    digest = hashlib.sha256()
    for start in range(0, cfg.episodes, 4096):
        batch = sampler.batch(start, min(4096, cfg.episodes - start))
        for part in (batch.classes, batch.support, batch.query):
            digest.update(part.numpy().tobytes())
    return digest.hexdigest()


def per_episode_accuracy(model, data, cfg) -> tuple[np.ndarray, object]:
    """(per-episode accuracy in percent `(episodes,)`, the `EvalResult`) of `model` on a split's data."""
    from dataclasses import replace

    from mdmf.pipeline.episodes.sampler import EpisodeSampler, EpisodeSpec
    from mdmf.pipeline.evaluate.episodic import evaluate

    result = evaluate(model, data.features, data.labels, data.prompt_embeddings, data.class_names,
                      replace(cfg, keep_predictions=True))
    sampler = EpisodeSampler(data.labels, EpisodeSpec(cfg.way, cfg.shot, cfg.queries), seed=cfg.seed, views=1)
    labels = sampler.batch(0, 1).query_labels  # (1, M): the same label layout in every episode
    hits = (result.predictions == labels).double().mean(-1)  # (episodes,)
    return 100.0 * hits.numpy(), result


def compare_methods(methods: list[Method], store, cfg, baseline: str, split: str = "test",
                    on_result=None) -> dict:
    """Evaluate every method on `split` of `store` with one `EvalConfig` and return the comparison (see `summary`).
    `on_result(method, EvalResult)` is called after each evaluation (`mdmf ablate` writes the cell's eval file)."""
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise MdmfError(f"two methods have the same name ({', '.join(names)}); give the runs distinct folder names")
    if baseline not in names:
        raise MdmfError(f"--baseline {baseline}: not one of the methods compared ({', '.join(names)})")
    data = store.load(split)
    accuracies, rows = {}, []
    for method in methods:
        accuracies[method.name], result = per_episode_accuracy(method.model, _features(method, data, split), cfg)
        if on_result is not None:
            on_result(method, result)
    base = accuracies[baseline]
    for method in methods:
        acc, ci = accuracy_interval(accuracies[method.name])
        diff = None if method.name == baseline else paired_difference(accuracies[method.name], base)
        rows.append({"name": method.name, "source": method.source, "model": method.model.config.name,
                     "features": str((method.store or store).path), "accuracy": acc, "ci95": ci,
                     "difference": diff})
    return {"split": split, "way": cfg.way, "shot": cfg.shot, "queries": cfg.queries, "episodes": cfg.episodes,
            "seed": cfg.seed, "store": str(store.path), "baseline": baseline, "test": TEST_NAME,
            "episodes_sha256": episodes_sha256(data.labels, cfg), "methods": rows,
            "per_episode": {name: acc.tolist() for name, acc in accuracies.items()}}


def _features(method: Method, common, split: str):
    """The split's features a method is evaluated on: the comparison's, or its own store's when they are the same
    videos with the same labels (so that episode i is the same videos for every method)."""
    if method.store is None:
        return common
    own = method.store.load(split)
    if list(own.video_ids) != list(common.video_ids) or not np.array_equal(own.labels, common.labels):
        raise MdmfError(f"{method.source}: its features of {split} ({method.store.path}) hold other videos than the "
                        "comparison's store; the episodes would differ. Compare it on one store with --cache PATH")
    return own


def untrained_model(name: str, store):
    """An untrained model of MODELS (one with nothing to train) on the store's D and T."""
    from mdmf.config import ModelConfig
    from mdmf.registry import MODELS, build_model

    fixed = sorted(n for n, cls in MODELS.items() if not cls.needs_training)
    if name not in fixed:
        raise MdmfError(f"--model {name}: only models with nothing to train can be compared without a run "
                        f"({', '.join(fixed)}); train the others first (`mdmf train`) and give their --run")
    return build_model(ModelConfig(name=name, dim=store.meta.dim, frames=store.meta.frames))


def _methods(cfg: CompareConfig):
    """(methods, the store) of a `CompareConfig`: runs first, in the order given, then the untrained models."""
    from mdmf.pipeline.data.datasets import default_store_path
    from mdmf.pipeline.features.store import FeatureStore
    from mdmf.pipeline.runs import RunDir

    if not cfg.runs and not cfg.models:
        raise MdmfError("nothing to compare: give runs (--run runs/<name>, repeatable) and/or --model otam")
    runs = [RunDir(r) for r in cfg.runs]
    if cfg.cache or not runs:
        if not cfg.cache and not cfg.dataset:
            raise MdmfError("--model without a run: give the store with --cache PATH or --dataset NAME")
        store = FeatureStore.open(cfg.cache or default_store_path(cfg.dataset, cfg.backbone))
    else:
        store = runs[0].open_store()
    methods = []
    for run in runs:
        model, state = run.load_model()
        own = None
        if not cfg.cache:
            _check_same_store(run, store)
            if state["train_config"].get("stage") == "e2e":  # as `mdmf eval --run`: its fine-tuned encoder's features
                from mdmf.pipeline.apps.e2e_eval import extract_run_store

                own = extract_run_store(run, cfg.split, cfg.root, device=cfg.episodes.device,
                                        progress=cfg.episodes.progress)
        methods.append(Method(run.name, str(run.path), model, own))
    methods += [Method(name, "untrained", untrained_model(name, store)) for name in cfg.models]
    return methods, store


def _check_same_store(run, store) -> None:
    """Without --cache, every run must have been trained on the store the comparison uses (the first run's)."""
    identity = run.best_state().get("store_identity")
    if identity is not None and not store.meta.made_as(identity):
        raise MdmfError(f"{run}: trained on another store than {store.path}; give the store to evaluate all runs on "
                        "with --cache PATH")


def default_out(cfg: CompareConfig) -> Path:
    e = cfg.episodes
    return Path("runs") / f"compare-{cfg.split}_{e.way}w{e.shot}s_seed{e.seed}"


def run_compare(cfg: CompareConfig) -> tuple[dict, Path]:
    """The comparison a `CompareConfig` asks for, written to `<out>.json` (with the per-episode accuracies) and
    `<out>.md`; returns (summary, the path stem)."""
    from dataclasses import replace

    from mdmf.pipeline.apps.compare_output import to_markdown
    from mdmf.pipeline.core.devices import resolve_device

    methods, store = _methods(cfg)
    baseline = cfg.baseline or next((m.name for m in methods if m.source == "untrained"), methods[0].name)
    ecfg = replace(cfg.episodes, device=str(resolve_device(cfg.episodes.device)))
    summary = compare_methods(methods, store, ecfg, baseline, cfg.split)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    out.with_suffix(".md").write_text(to_markdown(summary))
    return summary, out
