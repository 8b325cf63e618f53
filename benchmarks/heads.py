"""Head-training episodes/s of every head the registry has (`mdmf.registry.MODELS`), measured in one run.

For each head, feature width D (1024: RN50, 512: ViT-B/16) and shot (5-way 1- and 5-shot): optimizer steps of
`mdmf.pipeline.train.loop.train` (forward, backward, Adam; 5 queries per class; the default 16 episodes per step) on a
small synthetic store, the step times read from the run's metrics.jsonl (the median step, the first left out as
warm-up). The list of heads is the registry's, never written here: a head added there is measured too. A head with
nothing to train (`needs_training = False`, the OTAM baseline) is listed as such; a head whose run fails is listed
with its error and the others go on.

    python benchmarks/heads.py --device cuda --json heads.json        # a GPU (not yet run on one)
    python benchmarks/heads.py --device cpu --dims 32 --shots 1 --steps 2 --episodes-per-step 2 \
        --set heads=4 --set mlp_dim=32                                    # a quick check on a CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def time_head(name: str, dim: int, shot: int, store, steps: int, device: torch.device, work: Path,
              overrides: dict | None = None, episodes_per_step: int | None = None) -> dict:
    """Head-training episodes/s of head `name` through `train.loop.train` (5 queries per class; 16 episodes a step
    unless `episodes_per_step` says otherwise)."""
    from mdmf.pipeline.train.loop import TrainConfig, train

    run = work / f"run-{name}-{dim}-{shot}"
    shutil.rmtree(run, ignore_errors=True)
    cfg = TrainConfig(store=str(store.path), run_dir=str(run), model={"name": name, **(overrides or {})}, shot=shot,
                      queries=5, steps=max(2, steps), episodes_per_step=episodes_per_step, val_every=10**9,
                      val_episodes=5, device=str(device), progress=False)
    train(cfg)
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in records if "seconds" in r and "loss" in r]
    per_step = float(np.median(np.diff(seconds)))  # the first step (warm-up) left out; the median resists a busy moment
    shutil.rmtree(run, ignore_errors=True)
    return {"head": name, "dim": dim, "shot": shot, "queries_per_class": 5, "episodes_per_step": cfg.episodes_per_step,
            "steps_timed": len(seconds) - 1, "seconds_per_step": per_step,
            "train_episodes_per_s": cfg.episodes_per_step / per_step}


def parse_sets(items: list[str]) -> dict:
    """`key=value` model overrides, values read as JSON where they parse (numbers, booleans), else as strings."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--dims", default="1024,512", help="feature widths: 1024 = RN50, 512 = ViT-B/16")
    ap.add_argument("--shots", default="1,5")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per head (default: 8 on CUDA, 3 on CPU)")
    ap.add_argument("--episodes-per-step", type=int, default=None,
                    help="episodes per optimizer step (default: training's, 16); fewer for a quick check")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="model setting for every head (ModelConfig field), e.g. heads=4 for a quick CPU check")
    ap.add_argument("--json", type=Path, help="write the numbers here too (rewritten after every head)")
    args = ap.parse_args()

    from mdmf.pipeline.core.devices import resolve_device
    from mdmf.registry import MODELS
    from synthetic import make_store

    device = resolve_device(args.device)
    steps = args.steps or (8 if device.type == "cuda" else 3)
    overrides = parse_sets(args.sets)
    machine = (f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads, device {device}"
               + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    result = {"machine": machine, "heads": sorted(MODELS), "model_settings": overrides, "rows": []}
    print(machine, flush=True)
    work = Path(tempfile.mkdtemp(prefix="mdmf-bench-heads-"))
    try:
        for dim in (int(d) for d in args.dims.split(",")):
            store = make_store(work / f"store-{dim}", per_class=20, dim=dim)
            for name in sorted(MODELS):
                for shot in (int(s) for s in args.shots.split(",")):
                    row = {"head": name, "dim": dim, "shot": shot}
                    t = time.perf_counter()
                    if not MODELS[name].needs_training:
                        row["status"] = "nothing to train"
                    else:
                        try:
                            row = time_head(name, dim, shot, store, steps, device, work, overrides,
                                            args.episodes_per_step) | {"status": "ok"}
                        except Exception as err:  # noqa: BLE001 - one head's failure is its row, the others go on
                            row["status"] = f"error: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
                    row["wall_s"] = round(time.perf_counter() - t, 2)
                    result["rows"].append(row)
                    rate = f"{row['train_episodes_per_s']:.2f} episodes/s" if row["status"] == "ok" else row["status"]
                    print(f"  {name:<16} D={dim:<5} {shot}-shot: {rate}", flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
