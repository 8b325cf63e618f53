"""A run folder of `mdmf train`: the one place that knows its files, its store and how to load its model.

    runs/<name>/config.json     the resolved training + model config, and the store's identity
    runs/<name>/metrics.jsonl   one JSON line per optimizer step (loss parts, accuracy) and per validation
    runs/<name>/last.pt         model, optimizer, grad scaler, step, best score, RNG state (for --resume); written
                                at every validation, and at the step where Ctrl-C stopped the run
    runs/<name>/best.pt         the heads with the best validation accuracy (val split, never test)
    runs/<name>/visual.pt       e2e only: the visual encoder of best.pt (`--weights runs/<name>` re-extracts with it)
    runs/<name>/eval/<split>_<way>w<shot>s_seed<seed>[_frames].json   (and .txt): `mdmf eval` results
    runs/<name>/stores/<split>-<weights sha[:12]>   e2e only: a split re-extracted with the run's visual encoder

Run folders travel: config.json and the checkpoints record where the store is as given, as an absolute path and
relative to the run folder (`store_location`), beside the store's identity; `RunDir.open_store` tries the path
relative to the run folder, then the absolute one, then the given one (relative to the current folder, and for runs
made before this was recorded, to each folder above the run), and takes the first store whose identity is the
run's. So a run folder copied to another machine with its store, keeping their relative layout, works from any
folder; `--cache PATH` names a store that moved elsewhere.

The file name `visual.pt` belongs to `features.backbones` (`--weights runs/<name>` reads it there, a room before
this one), so it is imported from there. Untrained baselines get a folder of the same shape
(`runs/baselines/<dataset>-<backbone>-otam`, `runs/demo-otam`) for their eval files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mdmf.config import ModelConfig
from mdmf.pipeline.core.checkpoint import load_checkpoint, save_atomic
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.features.backbones import RUN_VISUAL, run_base_record
from mdmf.pipeline.features.store import IDENTITY_DEFAULTS, FeatureStore
from mdmf.registry import build_model


@dataclass
class Curves:
    """From `metrics.jsonl`: one record per optimizer step (`train`) and per validation (`val`)."""

    train: list[dict]
    val: list[dict]


def read_curves(path: Path) -> Curves:
    """The rows of a `metrics.jsonl`, split into training steps and validations."""
    path = Path(path)
    if not path.is_file():
        raise MdmfError(f"{path}: not found; is this a run folder of `mdmf train`?")
    train, val = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise MdmfError(f"{path}, line {n}: not JSON; the file is damaged") from None
        (val if "val_accuracy" in record else train).append(record)
    return Curves(train, val)


# What a head depends on in its store, never different between the store a run was trained on and one it is used
# with: the encoder (its weights by hash, its input constants, its width) and how frames became features.
ENCODER_FIELDS = ("backbone", "open_clip_model", "weights_sha256", "dim", "image_size", "mean", "std", "interpolation")
RECIPE_FIELDS = ("frames", "frame_sampling", "sampling", "normalize", "crop", "resize_ratio")
# Different only on purpose: a head evaluated on another dataset's store of the same encoder (`--cross-dataset`).
DATASET_FIELDS = ("dataset",)


def first_difference(trained: dict, other: dict, keys) -> str | None:
    """The first of `keys` whose value differs between two store identities (entries added later: their defaults)."""
    trained, other = {**IDENTITY_DEFAULTS, **trained}, {**IDENTITY_DEFAULTS, **other}
    return next((k for k in keys if trained.get(k) != other.get(k)), None)


def _shown(value) -> str:
    return repr(value[:16] + "…") if isinstance(value, str) and len(value) > 20 else repr(value)  # a sha256


class RunDir:
    """One run folder. best.pt is read at most once per `RunDir` (`best_state`, `load_model` share it), so pass the
    `RunDir` along rather than its path."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._state: dict | None = None
        self._model = None

    @classmethod
    def of(cls, run: "str | Path | RunDir") -> "RunDir":
        return run if isinstance(run, RunDir) else cls(run)

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self) -> str:
        return str(self.path)

    # --- files
    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def visual(self) -> Path:
        return self.path / RUN_VISUAL

    def eval_path(self, split: str, way: int, shot: int, seed: int, frames: bool = False) -> Path:
        """Where `mdmf eval` writes its result for these episodes (`frames`: `--from-frames` of an e2e run)."""
        return self.path / "eval" / f"{split}_{way}w{shot}s_seed{seed}{'_frames' if frames else ''}.json"

    def run_store(self, split: str, weights_sha256: str) -> Path:
        """e2e: where `split` re-extracted with the run's visual encoder is kept (one store per visual.pt)."""
        return self.path / "stores" / f"{split}-{weights_sha256[:12]}"

    # --- config.json and metrics.jsonl
    def holds_run(self) -> bool:
        return self.path.exists() and self.config.exists()

    def read_config(self) -> dict:
        return json.loads(self.config.read_text())

    def start(self, config: dict) -> None:
        """A new run: the folder, its config.json and an empty metrics.jsonl."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config, indent=2))
        self.metrics.write_text("")

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def keep_metrics_upto(self, step: int) -> None:
        """On resume: drop the rows written after the checkpoint's step (they are computed again)."""
        lines = self.metrics.read_text().splitlines() if self.metrics.is_file() else []
        if lines and not lines[-1].endswith("}"):
            lines = lines[:-1]  # a row cut short by a full disk: after the checkpoint, computed again
        kept = [line for line in lines if line and json.loads(line).get("step", 0) <= step]
        self.metrics.write_text("".join(line + "\n" for line in kept))

    def read_metrics(self) -> Curves:
        return read_curves(self.metrics)

    # --- checkpoints and the model
    def trained_steps(self) -> int | None:
        """The step of `last.pt` (None without one); memory-mapped, so the weights are not read."""
        if not self.last.is_file():
            return None
        return int(load_checkpoint(self.last, mmap=True)["step"])

    def best_state(self) -> dict:
        """best.pt (read once)."""
        if self._state is None:
            if not self.best.is_file():
                raise MdmfError(f"{self.path}: no best.pt; is this a run folder of `mdmf train` that reached a "
                                "validation?")
            self._state = load_checkpoint(self.best)
        return self._state

    def load_model(self):
        """(the best model, best.pt's state); built once per `RunDir`."""
        state = self.best_state()
        if self._model is None:
            model = build_model(saved_model_config(state, str(self.best)))
            model.load_state_dict(state["model"])
            self._model = model
        return self._model, state

    @property
    def stage(self) -> str | None:
        """`head` or `e2e`: the stage best.pt was trained in."""
        return self.best_state()["train_config"].get("stage")

    @property
    def store_path(self) -> str:
        """The feature store the run was trained on, found as `open_store` finds it."""
        return str(self.open_store().path)

    def store_location(self, store: str | Path) -> dict:
        """What a run records about where its store is: `given`, `absolute`, `relative_to_run` (see the module)."""
        real = Path(store).resolve()
        try:
            relative = os.path.relpath(real, self.path.resolve())
        except ValueError:  # another drive (Windows)
            relative = None
        return {"given": str(store), "absolute": str(real), "relative_to_run": relative}

    def store_candidates(self, state: dict | None = None) -> list[Path]:
        """Where the run's store may be, in the order `open_store` tries them."""
        state = state if state is not None else self.best_state()
        location = state.get("store_location") or {}
        given = Path(location.get("given") or state["train_config"]["store"])
        found = []
        if location.get("relative_to_run"):
            # joined to the run's real path (the relative path was taken between real paths), then tidied
            found.append(Path(os.path.normpath(self.path.resolve() / location["relative_to_run"])))
        if location.get("absolute"):
            found.append(Path(location["absolute"]))
        found.append(given)
        if not location and not given.is_absolute() and state.get("store_identity"):
            # a run made before the location was recorded: trained in some folder above it, usually
            found += [parent / given for parent in self.path.absolute().parents]
        unique = []
        for path in found:
            if path not in unique:
                unique.append(path)
        return unique

    def check_store(self, store: FeatureStore, state: dict | None = None, cross_dataset: bool = False,
                    option: str | None = None) -> None:
        """Refuse a store the run's heads do not fit, in one line naming the field: another encoder or recipe
        (`ENCODER_FIELDS`, `RECIPE_FIELDS`) always, another dataset unless `cross_dataset`. `option`: how the line
        starts (default: `--cache <store>: `)."""
        option = option or f"--cache {store.path}: "
        state = state if state is not None else self.best_state()
        # width and frames as the heads were built (also for runs made before the identity was recorded) and as
        # the store's arrays are
        model = state.get("model_config") or {}
        shape = {k: int(model[k]) for k in ("dim", "frames") if model.get(k) is not None}
        trained = {**(state.get("store_identity") or {}), **shape}
        have = {**store.meta.identity, "dim": store.meta.dim, "frames": store.meta.frames}
        key = first_difference(trained, have, ENCODER_FIELDS + RECIPE_FIELDS)
        if key is not None:
            raise MdmfError(f"{option}made with {key}={_shown(have.get(key))}, but the run {self.path} "
                            f"was trained on {key}={_shown({**IDENTITY_DEFAULTS, **trained}.get(key))}; its heads "
                            "only fit features of the same encoder and frames: give a store extracted like the run's")
        key = None if cross_dataset else first_difference(trained, have, DATASET_FIELDS)
        if key is not None:
            raise MdmfError(f"{option}a store of {key} {have.get(key)!r}, but the run {self.path} was "
                            f"trained on {trained.get(key)!r}; add --cross-dataset to use the heads on another "
                            "dataset's features of the same encoder")

    def open_store(self, override: str | Path | None = None, state: dict | None = None,
                   extra: tuple = (), cross_dataset: bool = False) -> FeatureStore:
        """The run's feature store (`override`: the user's `--cache`, opened as given and checked with
        `check_store`). Each candidate (and then each of `extra`) is accepted only when its identity is the one the
        run recorded (`state`: best.pt's by default); none found is one line naming where it looked."""
        state = state if state is not None else self.best_state()
        if override:
            store = FeatureStore.open(override)
            self.check_store(store, state, cross_dataset=cross_dataset)
            return store
        identity = state.get("store_identity")
        others = []
        candidates = self.store_candidates(state) + [Path(p) for p in extra if p]
        for path in candidates:
            if not (path / "zarr.json").is_file():
                continue
            store = FeatureStore.open(path)
            if identity is None or store.meta.made_as(identity):
                return store
            have = store.meta.identity
            key = first_difference(identity, have, sorted({**identity, **have}))
            others.append(f"{path} holds another store ({key}={_shown(have.get(key))}, the run's: "
                          f"{_shown({**IDENTITY_DEFAULTS, **identity}.get(key))})")
        looked = ", ".join(str(p) for p in candidates[:4])
        found = f"; {', '.join(others)}" if others else ""
        raise MdmfError(f"{self.path}: its feature store was not found (looked at {looked}){found}; give its "
                        "location with --cache PATH")


def saved_model_config(state: dict, where: str) -> ModelConfig:
    """The model config a checkpoint's `state` saved, read with `ModelConfig.from_saved` (a run saved before a default
    changed keeps the model it was trained as); one that cannot be read is an `MdmfError` naming `where`."""
    try:
        return ModelConfig.from_saved(state["model_config"])
    except ValueError as err:
        raise MdmfError(f"{where}: its model config cannot be read: {err}") from None


def save_run_visual(run: RunDir, visual: dict, step: int, base_spec, base_sha: str, ecfg) -> None:
    """`visual.pt`: a run's fine-tuned visual encoder (the state dict `visual`, of best.pt's `step`) and what it
    started from, the store's backbone (`base_spec`, its weights' sha256, the store's `ExtractConfig`), so that
    `--weights runs/<name>` rebuilds it. A JSON backbone config is copied into the run, so the run stands alone."""
    config_file = None
    arg = ecfg.resolved_backbone()
    if arg.endswith(".json"):
        config_file = Path(arg).name
        if not (run.path / config_file).is_file():
            shutil.copyfile(arg, run.path / config_file)
    save_atomic({"visual": visual, "step": step, "backbone": run_base_record(base_spec, base_sha, config_file)},
                run.visual)
