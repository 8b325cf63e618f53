"""`mdmf ablate`: the paper's ablation tables (3, 4, 5) as grids of head-stage runs on a feature store.

A table is a preset file `pipeline/presets/ablation_table<N>.json`: per cell, the `ModelConfig` overrides that make
it (only overrides of the paper defaults) and the paper's numbers. Every cell is a run folder
`<runs>/ablate-<dataset>-t<N>-<cell>`, trained with `train.loop.train`, then evaluated on the test split; the eval JSON
(`<run>/eval/test_<way>w<shot>s_seed<seed>.json`, as `mdmf eval` writes it) marks the cell done. Running the command
again skips done cells, resumes a cell whose training was interrupted (from its `last.pt`), and only re-evaluates a
trained cell whose eval is missing, older than its `best.pt`, or of another episode count.

All cells are evaluated on the same store, split, seed and episode count, so on identical episodes
(`apps.compare`): beside its eval JSON each cell keeps its per-episode accuracies
(`<run>/eval/test_<way>w<shot>s_seed<seed>.episodes.json`), and the table gives every cell's paired difference to a
baseline cell (`--baseline`, default the first) with its 95 % interval and p-value, without evaluating a done cell again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from mdmf.config import ModelConfig
from mdmf.pipeline.apps.ablate_output import to_markdown
from mdmf.pipeline.apps.compare import TEST_NAME, paired_difference, per_episode_accuracy
from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.limits import COUNT, NONNEGATIVE, RATE, WAY, check_ranges
from mdmf.pipeline.evaluate.episodic import EvalConfig, write_result
from mdmf.pipeline.features.store import find_store, is_store, stores_beside
from mdmf.pipeline.runs import RunDir
from mdmf.pipeline.train.loop import TrainConfig, train

PRESETS = Path(__file__).resolve().parents[1] / "presets"
TABLES = (3, 4, 5)


@dataclass
class AblationCell:
    cell: str
    label: str
    overrides: dict
    paper: dict[str, float] = field(default_factory=dict)  # dataset -> paper accuracy %, 5-way


def load_table(table: int) -> tuple[dict, list[AblationCell]]:
    """(table header: title, shot, note; cells) of a preset; overrides are checked against `ModelConfig`."""
    if table not in TABLES:
        raise MdmfError(f"--table {table}: the paper's ablation tables are {', '.join(map(str, TABLES))}")
    data = json.loads((PRESETS / f"ablation_table{table}.json").read_text())
    cells = [AblationCell(**c) for c in data["cells"]]
    for c in cells:
        ModelConfig.from_dict({"name": "mdmf", **c.overrides})  # raises on an unknown field or value
    return {k: v for k, v in data.items() if k != "cells"}, cells


# The allowed values of AblateConfig's numeric settings (`mdmf.pipeline.core.limits`); None: not given.
ABLATE_RANGES = {"shot": COUNT, "way": WAY, "steps": COUNT, "episodes": COUNT, "seed": NONNEGATIVE, "val_every": COUNT,
                 "val_episodes": COUNT, "episodes_per_step": COUNT, "lr": RATE}


@dataclass
class AblateConfig:
    dataset: str
    table: int
    cache: str | None = None  # None: cache/<dataset>/<backbone>
    backbone: str | None = None  # part of the default store path
    runs: str = "runs"
    cells: tuple[str, ...] = ()  # only these cells (empty: all)
    shot: int | None = None  # None: the table's (5)
    way: int = 5
    steps: int = 300
    episodes: int = 10_000  # test episodes per cell
    seed: int = 0
    val_every: int = 25
    val_episodes: int = 1000
    episodes_per_step: int = 16
    lr: float | None = None  # None: the head stage's default
    baseline: str | None = None  # the cell the paired differences are taken to (None: the first cell shown)
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a numeric setting out of its range (`ABLATE_RANGES`) in one line, before any work."""
        check_ranges(self, ABLATE_RANGES)

    def store(self) -> Path:
        if self.cache:
            return Path(self.cache)
        return find_store(self.dataset, self.backbone)

    def run_dir(self, cell: str) -> Path:
        return Path(self.runs) / f"ablate-{self.dataset}-t{self.table}-{cell}"


def cell_state(run: Path | RunDir, cfg: AblateConfig, shot: int) -> str:
    """What a cell still needs: `done`, `evaluate` (trained to `cfg.steps`, no current eval of `cfg.episodes`),
    `resume` (interrupted, or asked for more steps), `restart` (interrupted before its first checkpoint) or `train`."""
    run = RunDir.of(run)
    steps = run.trained_steps()
    if steps is None:
        return "restart" if run.config.is_file() else "train"
    if steps < cfg.steps:
        return "resume"
    result, best = run.eval_path("test", cfg.way, shot, cfg.seed), run.best
    fresh = lambda p: p.is_file() and p.stat().st_mtime >= best.stat().st_mtime  # noqa: E731
    if best.is_file() and fresh(result) and fresh(episodes_file(result)):
        if json.loads(result.read_text()).get("episodes") == cfg.episodes:
            return "done"
    return "evaluate"


def episodes_file(result: Path) -> Path:
    """Where a cell's per-episode accuracies are kept beside its eval JSON (for the paired differences)."""
    return result.with_suffix(".episodes.json")


def _check_same_cell(run: RunDir, cell: AblationCell, shot: int) -> None:
    """A cell's existing run must have been made with the cell's settings (a renamed or edited preset, or a run
    folder reused by hand, would otherwise be reported under the wrong label)."""
    saved = run.read_config()
    model, train = saved.get("model", {}), saved.get("train", {})
    for key, value in {**cell.overrides, "name": "mdmf"}.items():
        if model.get(key) != value:
            raise MdmfError(f"{run}: made with {key}={model.get(key)!r}, but cell {cell.cell} needs {key}={value!r}; "
                            "delete the folder or use another --runs")
    if train.get("shot") != shot:
        raise MdmfError(f"{run}: trained {train.get('shot')}-shot, the grid asks for {shot}-shot; use another --runs")


def run_cell(cfg: AblateConfig, cell: AblationCell, shot: int, console: Console) -> dict:
    """Bring one cell to done; returns its row (cell, label, overrides, run, state before, accuracy, ci95, paper)."""
    run = RunDir(cfg.run_dir(cell.cell))
    state = cell_state(run, cfg, shot)
    if state not in ("train", "restart"):
        _check_same_cell(run, cell, shot)
    console.print(f"[bold]{cell.cell}[/] ({cell.label}): {state}", highlight=False)
    if state == "restart":  # nothing was checkpointed: start the cell over
        for path in (run.config, run.metrics, run.best):
            path.unlink(missing_ok=True)
    if state in ("train", "restart", "resume"):
        lr = {} if cfg.lr is None else {"lr": cfg.lr}  # None: the head stage's default
        tcfg = TrainConfig(store=str(cfg.store()), run_dir=str(run), model={"name": "mdmf", **cell.overrides},
                           way=cfg.way, shot=shot, steps=cfg.steps, episodes_per_step=cfg.episodes_per_step,
                           batch_episodes=math.gcd(16, cfg.episodes_per_step), val_every=cfg.val_every,
                           val_episodes=cfg.val_episodes, seed=cfg.seed, device=cfg.device, progress=cfg.progress, **lr)
        train(tcfg, resume=state == "resume", steps=cfg.steps)
    path = run.eval_path("test", cfg.way, shot, cfg.seed)
    if state != "done":
        model, _ = run.load_model()
        store = run.open_store(cfg.cache)
        per_episode, result = per_episode_accuracy(model, store.load("test"), EvalConfig(
            way=cfg.way, shot=shot, queries=1, episodes=cfg.episodes, seed=cfg.seed,
            device=str(resolve_device(cfg.device)), progress=cfg.progress))
        write_result(result, path, f"{run.name}: table {cfg.table}, {cell.label}")
        episodes_file(path).write_text(json.dumps([round(float(a), 6) for a in per_episode]))
    return _row(cell, run, path, state)


def _row(cell: AblationCell, run: RunDir, result: Path, state: str) -> dict:
    data = json.loads(result.read_text())
    return {"cell": cell.cell, "label": cell.label, "overrides": cell.overrides, "run": str(run), "state": state,
            "accuracy": data["accuracy"], "ci95": data["ci95"], "episodes": data["episodes"], "paper": cell.paper,
            "result": str(result)}


def add_paired_differences(rows: list[dict], baseline: str | None) -> str:
    """Each row's paired difference to the baseline cell over the identical test episodes (`difference`: mean,
    ci95, p_value, t; None for the baseline); returns the baseline's cell name."""
    import numpy as np

    cells = [r["cell"] for r in rows]
    baseline = baseline or cells[0]
    if baseline not in cells:
        raise MdmfError(f"--baseline {baseline}: not a cell of this grid ({', '.join(cells)})")
    per_episode = {r["cell"]: np.array(json.loads(episodes_file(Path(r["result"])).read_text())) for r in rows}
    for row in rows:
        row["difference"] = (None if row["cell"] == baseline
                             else paired_difference(per_episode[row["cell"]], per_episode[baseline]))
    return baseline


def run_ablation(cfg: AblateConfig, console: Console | None = None,
                 show_table: Callable[[dict], None] | None = None) -> dict:
    """Every (selected) cell of the table; writes `<runs>/ablate-<dataset>-t<N>.json` and `.md`; returns the JSON.
    `show_table(summary)` renders it (`mdmf ablate`: `mdmf.cli.tables.print_ablation_table`)."""
    console = console or Console()
    header, cells = load_table(cfg.table)
    unknown = sorted(set(cfg.cells) - {c.cell for c in cells})
    if unknown:
        raise MdmfError(f"--cell {', '.join(unknown)}: table {cfg.table} has cells {', '.join(c.cell for c in cells)}")
    if not is_store(cfg.store()):
        raise MdmfError(f"{cfg.store()}: no feature store ({stores_beside(cfg.store())}); extract {cfg.dataset} "
                        "first (`mdmf extract`) or give --cache")
    shot = cfg.shot or int(header["shot"])
    rows = []
    for cell in cells:
        if not cfg.cells or cell.cell in cfg.cells:
            rows.append(run_cell(cfg, cell, shot, console))
        elif cell_state(cfg.run_dir(cell.cell), cfg, shot) == "done":  # not asked for, but finished earlier: show it
            run = RunDir(cfg.run_dir(cell.cell))
            rows.append(_row(cell, run, run.eval_path("test", cfg.way, shot, cfg.seed), "done"))
    baseline = add_paired_differences(rows, cfg.baseline)
    summary = {"dataset": cfg.dataset, "table": cfg.table, "title": header["title"], "note": header.get("note"),
               "way": cfg.way, "shot": shot, "steps": cfg.steps, "episodes": cfg.episodes, "seed": cfg.seed,
               "store": str(cfg.store()), "baseline": baseline, "test": TEST_NAME, "cells": rows}
    out = Path(cfg.runs) / f"ablate-{cfg.dataset}-t{cfg.table}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    out.with_suffix(".md").write_text(to_markdown(summary))
    if show_table is not None:
        show_table(summary)
    console.print(f"written to {out}.json and {out}.md", highlight=False)
    return summary

