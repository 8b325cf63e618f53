"""`mdmf demo --compare`: every head of MODELS on the toy data, on identical test episodes, against untrained OTAM.

The toy store of `mdmf demo` (same paths, same seed rule), then every trainable head in `mdmf.registry.MODELS`
trained `steps` steps on it (the model settings of its `reference-<name>` preset where one is shipped, else the
defaults; the demo's own short schedule and the head stage's default learning rate either way, since a reference
preset's schedule is sized for a real dataset), then `apps.compare` over the trained runs and every model with
nothing to train, per shot, with paired differences to `otam`. A head added to MODELS appears here by itself.

Runs: `<runs>/demo-compare-<name>[-seedS]`, resumed when interrupted; results: `<runs>/demo-compare[-seedS].json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from mdmf.pipeline.apps.demo import DemoConfig, toy_store

BASELINE = "otam"


def demo_heads() -> tuple[list[str], list[str]]:
    """(trainable heads, heads with nothing to train) of MODELS, in registry order."""
    from mdmf.registry import MODELS

    trainable = [name for name, cls in MODELS.items() if cls.needs_training]
    return trainable, [name for name, cls in MODELS.items() if not cls.needs_training]


def head_settings(name: str) -> tuple[dict, str]:
    """(the model settings a head trains with in the demo, where they come from)."""
    from mdmf.pipeline.core.presets import load_preset, shipped_presets

    preset = f"reference-{name}"
    if preset in shipped_presets():
        return {**load_preset(preset).model, "name": name}, f"preset {preset}"
    return {"name": name}, "defaults"


def compare_run_dir(cfg: DemoConfig, name: str) -> Path:
    return Path(cfg.runs) / f"demo-compare-{name}{cfg.suffix}"


def run_demo_compare(cfg: DemoConfig, console: Console | None = None,
                     show_extract: Callable[[object, Console], None] | None = None,
                     show_compare: Callable[[dict, Console], None] | None = None) -> dict:
    """Extract, train every head, compare per shot; returns {"heads": {name: settings source}, "shots": {shot:
    comparison}} (also written to `<runs>/demo-compare[-seedS].json`). `show_compare(summary, console)` renders a
    comparison (`mdmf demo --compare`: `mdmf.cli.compare.print_compare_table`)."""
    from mdmf.pipeline.apps.compare import Method, compare_methods, untrained_model
    from mdmf.pipeline.core.devices import resolve_device
    from mdmf.pipeline.evaluate.episodic import EvalConfig
    from mdmf.pipeline.runs import RunDir
    from mdmf.pipeline.train.loop import train

    console = console or Console()
    trainable, fixed = demo_heads()
    console.rule("1/3 toy videos and features (tiny backbone)")
    store = toy_store(cfg, console, show_extract)
    sources, methods = {}, []
    for i, name in enumerate(trainable, 1):
        settings, sources[name] = head_settings(name)
        console.rule(f"2/3 train {name} ({i}/{len(trainable)}, {sources[name]}, {cfg.steps} steps)")
        run = RunDir(compare_run_dir(cfg, name))
        train(cfg.train_config(run.path, settings), resume=run.last.is_file())
        methods.append(Method(name, str(run.path), run.load_model()[0]))
    methods += [Method(name, "untrained", untrained_model(name, store)) for name in fixed]
    console.rule("3/3 every head on the same test episodes")
    shots = {}
    for shot in cfg.shots:
        ecfg = EvalConfig(shot=shot, episodes=cfg.episodes, seed=cfg.seed, device=str(resolve_device("cpu")),
                          progress=cfg.progress)
        shots[str(shot)] = compare_methods(methods, store, ecfg, BASELINE)
        if show_compare is not None:
            show_compare(shots[str(shot)], console)
    out = {"heads": sources, "steps": cfg.steps, "shots": shots}
    path = Path(cfg.runs) / f"demo-compare{cfg.suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    console.print(f"results written to {path}", highlight=False)
    return out
