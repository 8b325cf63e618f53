"""The demo: the whole pipeline on the built-in toy dataset with the tiny backbone, offline, on a CPU.

generate toy videos → extract features (tiny) → evaluate the untrained OTAM baseline → train the MDMF head →
evaluate it on the same test episodes → one table, also written as JSON.

Seed 0 writes the store where `mdmf` looks for it by default (`cache/toy/tiny`), the run to `runs/demo-mdmf` and the
table to `runs/demo-results.json`; any other seed S gets its own `…-seedS` store, run and results (the seed sets the
cached train-view augmentation, so a store of one seed cannot serve another, and a run of one seed must not be resumed
by another). Running the same seed again reuses what is there: extraction and training resume, evaluation reruns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mdmf.config import ModelConfig
from mdmf.pipeline.core.limits import COUNT, NONNEGATIVE, check_ranges
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split, write_result
from mdmf.pipeline.features.extract import run_extract
from mdmf.pipeline.features.recipe import ExtractConfig
from mdmf.pipeline.features.store import FeatureStore
from mdmf.pipeline.runs import RunDir
from mdmf.pipeline.train.loop import TrainConfig, train
from mdmf.registry import build_model


# The allowed values of DemoConfig's numeric settings (`mdmf.pipeline.core.limits`); None: not given.
DEMO_RANGES = {"steps": COUNT, "shots": COUNT, "episodes": COUNT, "val_episodes": COUNT, "seed": NONNEGATIVE,
               "workers": NONNEGATIVE}


@dataclass
class DemoConfig:
    data_root: str = "data/toy"
    store: str | None = None  # default: cache/toy/tiny, or cache/toy/tiny-seedS for seed S != 0
    runs: str = "runs"
    steps: int = 150
    shots: tuple[int, ...] = (1, 5)
    episodes: int = 2000
    val_episodes: int = 1000  # validation episodes every 25 steps (TrainConfig's default; best.pt is chosen on them)
    seed: int = 0
    workers: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a numeric setting out of its range (`DEMO_RANGES`) in one line, before any work."""
        check_ranges(self, DEMO_RANGES)

    @property
    def suffix(self) -> str:
        return "" if self.seed == 0 else f"-seed{self.seed}"

    @property
    def store_path(self) -> str:
        return self.store or f"cache/toy/tiny{self.suffix}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs) / f"demo-mdmf{self.suffix}"

    @property
    def results_path(self) -> Path:
        return Path(self.runs) / f"demo-results{self.suffix}.json"

    def train_config(self, run_dir: Path, model: dict) -> TrainConfig:
        """How the demo trains a head (`mdmf demo`'s MDMF head, every head of `--compare`): on the toy store, on
        the CPU, mdmf's default optimiser."""
        return TrainConfig(store=self.store_path, run_dir=str(run_dir), model=model, steps=self.steps,
                           val_episodes=self.val_episodes, seed=self.seed, progress=self.progress, device="cpu")


def accuracy_cell(accuracy: float, ci95: float) -> str:
    """The demo table's cell, `68.8 ± 0.8`: Python's rounding of the stored float (79.05 prints as 79.0, since the
    float is just below it). BENCHMARKS.md records the same strings; tests/test_docs_claims.py checks it."""
    return f"{accuracy:.1f} ± {ci95:.1f}"


def toy_store(cfg: DemoConfig, console: Console, show_extract: Callable[[object, Console], None] | None = None):
    """The toy videos extracted with the tiny backbone into `cfg.store_path` (resumed when there); the store."""
    summary = run_extract(ExtractConfig(dataset="toy", root=cfg.data_root, out=cfg.store_path, backbone="tiny",
                                        train_views=4, workers=cfg.workers, progress=cfg.progress, seed=cfg.seed))
    if show_extract is not None:
        show_extract(summary, console)
    return FeatureStore.open(cfg.store_path)


def run_demo(cfg: DemoConfig, console: Console | None = None,
             show_extract: Callable[[object, Console], None] | None = None) -> dict:
    """The four steps; returns the results (also `cfg.results_path`). `show_extract(summary, console)` renders the
    extraction summary (`mdmf demo`: `mdmf.cli.tables.print_extract_summary`)."""
    console = console or Console()
    console.rule("1/4 toy videos and features (tiny backbone)")
    store = toy_store(cfg, console, show_extract)

    console.rule("2/4 untrained baseline: OTAM on the raw CLIP frame features")
    otam = build_model(ModelConfig(name="otam", dim=store.meta.dim, frames=store.meta.frames))
    results: dict = {"otam": {}, "mdmf": {}}
    for shot in cfg.shots:
        r = evaluate_split(otam, store, "test", EvalConfig(shot=shot, episodes=cfg.episodes, seed=cfg.seed,
                                                           progress=cfg.progress))
        results["otam"][shot] = r
        write_result(r, RunDir(Path(cfg.runs) / "demo-otam").eval_path("test", 5, shot, cfg.seed), "OTAM baseline (toy, tiny)")

    console.rule("3/4 train the MDMF head on the cached features (5-way 1-shot episodes)")
    run_dir = RunDir(cfg.run_dir)
    resume = run_dir.last.is_file()
    train(cfg.train_config(run_dir.path, {"name": "mdmf"}), resume=resume)

    console.rule("4/4 evaluate the trained head on the test classes")
    model, _ = run_dir.load_model()
    for shot in cfg.shots:
        r = evaluate_split(model, store, "test", EvalConfig(shot=shot, episodes=cfg.episodes, seed=cfg.seed,
                                                            progress=cfg.progress))
        results["mdmf"][shot] = r
        write_result(r, run_dir.eval_path("test", 5, shot, cfg.seed), "MDMF head (toy, tiny)")

    table = Table(title=f"toy dataset, tiny backbone, 5-way, {cfg.episodes} test episodes (seed {cfg.seed})")
    table.add_column("model")
    for shot in cfg.shots:
        table.add_column(f"{shot}-shot %", justify="right")
    for name, label in (("otam", "OTAM on raw CLIP features (untrained)"), ("mdmf", "CLIP-MDMF head (trained)")):
        table.add_row(label, *(accuracy_cell(results[name][s].accuracy, results[name][s].ci95) for s in cfg.shots))
    console.print(table)
    out = {name: {str(s): r.to_json() for s, r in by_shot.items()} for name, by_shot in results.items()}
    cfg.results_path.write_text(json.dumps(out, indent=2))
    console.print(f"results written to {cfg.results_path}")
    return out
