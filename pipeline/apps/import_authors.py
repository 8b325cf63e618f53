"""`mdmf import`: a checkpoint saved by the CLIP-FSAR or CLIP-MDMF code -> an mdmf run folder.

The run folder has the layout of `mdmf train`'s (`pipeline.runs`): config.json, best.pt with the head's weights
under mdmf's names and the `ModelConfig` that makes it the authors' computation, and, when the checkpoint holds the
fine-tuned CLIP visual encoder, `visual.pt` (the run is then an e2e run: `mdmf eval --run` re-extracts the split
with that encoder, `--cache STORE` evaluates the heads on a store's features instead). The store given with
`--cache` is the one the run is bound to (its raw CLIP features: the backbone the authors started from); without one
the run holds heads only and `mdmf eval --run ... --cache STORE` names the store.

What the checkpoint layouts are and how the keys are renamed: `apps.authors_keys` and the per-head tables in
`pipeline/assets/authors/`. The file is read with `weights_only=True`: a checkpoint that needs arbitrary unpickling is
refused, never executed.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from mdmf.pipeline.apps.authors_keys import (KeyMap, choose_map, config_value, covers, drop_wrappers, inferred,
                                             is_ignored, key_maps, map_head_keys)
from mdmf.pipeline.core.errors import MdmfError

STATE_KEYS = ("model_state", "model_state_dict")  # CLIP-FSAR's save_checkpoint, CLIP-MDMF's save_checkpoint
EMA_KEY = "model_ema_state"
STEP_KEYS = ("epoch", "iteration")


@dataclass
class ImportRequest:
    checkpoint: str
    out: str  # the run folder to write (must not hold a run yet)
    cache: str | None = None  # the store the run is bound to
    head: str | None = None  # the mdmf head, when the checkpoint has no config naming the authors' head
    preset: str | None = None  # model settings applied last (a shipped preset's name or a JSON file)
    ema: bool = False  # CLIP-FSAR: import the EMA weights (`model_ema_state`) instead of `model_state`
    backbone: bool = True  # False: leave a fine-tuned visual encoder out (heads only)


def read_authors_checkpoint(path: Path) -> dict:
    """The checkpoint, read with `weights_only=True`; one line saying what to do when it needs more."""
    if not path.is_file():
        raise MdmfError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise MdmfError(f"{path}: refused: it holds Python objects other than tensors and plain containers{what}, "
                        "which could run code when loaded; where you trust the file, re-save its weights in the "
                        "authors' environment with torch.save({'model_state': model.state_dict()}, 'plain.pt') "
                        "and import that") from None
    except Exception as err:
        raise MdmfError(f"{path}: cannot read the checkpoint ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise MdmfError(f"{path}: not a checkpoint of the CLIP-FSAR or CLIP-MDMF code (a {type(data).__name__}, not "
                        "a dict)")
    return data


def unpack(data: dict, ema: bool, path: Path) -> tuple[dict, dict | None, int]:
    """(state dict, the authors' config or None, the epoch/iteration or 0) of a loaded checkpoint."""
    key = EMA_KEY if ema else next((k for k in STATE_KEYS if k in data), None)
    if ema and EMA_KEY not in data:
        raise MdmfError(f"{path}: --ema, but the checkpoint has no {EMA_KEY}")
    if key is None:  # CLIP-MDMF's final file: the bare state dict
        if not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise MdmfError(f"{path}: neither {' nor '.join(STATE_KEYS)} nor a bare state dict; is it a checkpoint "
                            "of the CLIP-FSAR or CLIP-MDMF code?")
        state = data
    else:
        state = data[key]
    cfg = data.get("cfg")
    if isinstance(cfg, str):  # CLIP-FSAR stores `cfg.dump()`, the JSON text of its config
        try:
            cfg = json.loads(cfg)
        except json.JSONDecodeError:
            raise MdmfError(f"{path}: its `cfg` entry is not the JSON text the CLIP-FSAR code writes") from None
    step = next((int(data[k]) for k in STEP_KEYS if isinstance(data.get(k), int)), 0)
    return drop_wrappers(state), cfg if isinstance(cfg, dict) else None, step


def split_model(state: dict) -> tuple[dict, dict]:
    """(head weights, visual encoder weights) by the authors' names: CLIP-FSAR's `head.*` with the encoder at
    `head.backbone.*`, CLIP-MDMF's top level with it at `backbone.*`."""
    if any(k.startswith("head.") for k in state):
        others = sorted(k for k in state if not k.startswith("head."))
        if others:  # BaseVideoModel's own backbone is an Identity: nothing else has weights
            raise MdmfError(f"weights outside the head ({', '.join(others[:3])}…): not a few-shot model of the "
                            "CLIP-FSAR code")
        state = {k[len("head."):]: v for k, v in state.items()}
    visual = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    head = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    return head, visual


def model_settings(kmap: KeyMap, cfg: dict | None, ours: dict, store, preset: str | None,
                   theirs: dict | None = None, authors_head: str | None = None) -> dict:
    """The `ModelConfig` fields: the map's, its shipped preset's (the authors' head class's, where the map has
    variants), the class's own, the authors' config's, the sizes of the weights (`theirs`: the authors' head weights
    as saved), the store's D and T, then `--preset`."""
    from mdmf.pipeline.core.presets import load_preset, shipped_presets

    variant = kmap.variant(authors_head)
    settings = dict(kmap.model_settings)
    if variant["preset"] and variant["preset"] in shipped_presets():
        settings.update(load_preset(variant["preset"]).model)
    settings.update(variant["model"])
    for name, spec in variant["from_config"].items():
        if cfg is not None:
            try:
                settings[name] = config_value(cfg, spec)
            except KeyError:
                pass  # not in their config: their code's default, which the map's settings hold
    sizes = {name: inferred(ours, theirs or {}, spec) for name, spec in kmap.infer.items()}
    settings.update({k: v for k, v in sizes.items() if v is not None})
    if store is not None:
        for name in ("dim", "frames"):
            have = getattr(store.meta, name)
            if name in settings and settings[name] != have:
                raise MdmfError(f"--cache {store.path}: its features have {name}={have}, the checkpoint's head "
                                f"{name}={settings[name]}; give the store extracted with the authors' backbone")
            settings[name] = have
    if "dim" not in settings:
        raise MdmfError("the head has no weights to read the feature width from: give --cache STORE")
    if preset:
        settings.update(load_preset(preset).model)
    settings["name"] = kmap.model
    return settings


def tie_shared(model, ours: dict, path: Path) -> None:
    """Weights the model holds under several names (CrossTransformer's `query_head` is its `key_head`): one given
    fills the others; given twice, they must be equal (one line otherwise)."""
    names: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        names.setdefault(id(value), []).append(key)
    for group in (g for g in names.values() if len(g) > 1):
        given = [k for k in group if k in ours]
        if not given:
            continue
        if any(not torch.equal(ours[k], ours[given[0]]) for k in given[1:]):
            raise MdmfError(f"{path}: {' and '.join(given)} are one tensor in the authors' module and in mdmf's, "
                            "but differ in the checkpoint; is it another head? (--head NAME)")
        ours.update({k: ours[given[0]] for k in group})


def build_heads(kmap: KeyMap, settings: dict, ours: dict, path: Path, origin: dict | None = None):
    """(the mdmf model with the imported weights, the authors' keys left out as `optional`): each weight reshaped
    to its parameter's shape (the authors keep scalars as `(1,)`); a missing or surplus weight is one line."""
    from mdmf.config import ModelConfig
    from mdmf.registry import build_model

    try:
        model = build_model(ModelConfig.from_dict(settings))
    except ValueError as err:
        raise MdmfError(f"{path}: the head's settings are not a valid {kmap.model} config: {err}") from None
    tie_shared(model, ours, path)
    want = model.state_dict()
    origin = origin or {}
    left_out = sorted(k for k in set(ours) - set(want)
                      if any(covers(o, origin.get(k, k)) for o in kmap.optional))
    ours = {k: v for k, v in ours.items() if k not in left_out}
    missing = sorted(set(want) - set(ours))
    surplus = sorted(set(ours) - set(want))
    if missing or surplus:
        raise MdmfError(f"{path}: the weights do not fit mdmf's {kmap.model} with {settings}: missing "
                        f"{missing[:4]}, not in the model {surplus[:4]}")
    for key, value in ours.items():
        if value.numel() != want[key].numel():
            raise MdmfError(f"{path}: {key} has shape {tuple(value.shape)}, mdmf's {kmap.model} wants "
                            f"{tuple(want[key].shape)}")
    model.load_state_dict({k: v.reshape(want[k].shape).to(want[k].dtype) for k, v in ours.items()})
    return model, sorted(origin.get(k, k) for k in left_out)


def import_checkpoint(req: ImportRequest) -> dict:
    """Write the run folder `req.out` from the authors' checkpoint; returns what was imported (also in config.json
    under `imported`)."""
    from mdmf.pipeline.features.store import FeatureStore
    from mdmf.pipeline.runs import RunDir

    path, run = Path(req.checkpoint), RunDir(req.out)
    if run.holds_run():
        raise MdmfError(f"{run}: already holds a run; give a new --out (or delete it)")
    store = FeatureStore.open(req.cache) if req.cache else None
    state, cfg, step = unpack(read_authors_checkpoint(path), req.ema, path)
    head, visual = split_model(state)
    authors_head = (cfg or {}).get("VIDEO", {}).get("HEAD", {}).get("NAME")
    kmap = choose_map(key_maps(), head, authors_head, req.head)
    if kmap.refused:
        raise MdmfError(f"{path}: the weights of the authors' {'/'.join(kmap.authors_heads)}: {kmap.refused}")
    ours, unmapped, origin = map_head_keys(head, kmap)
    if unmapped:
        raise MdmfError(f"{path}: {len(unmapped)} weights of the authors' {'/'.join(kmap.authors_heads)} have no "
                        f"counterpart in mdmf's {kmap.model} ({', '.join(unmapped[:4])}); is it another head? "
                        "(--head NAME)")
    settings = model_settings(kmap, cfg, ours, store, req.preset, head, authors_head)
    model, left_out = build_heads(kmap, settings, ours, path, origin)
    with_visual = bool(visual) and req.backbone
    if with_visual and store is None:
        raise MdmfError(f"{path}: holds a fine-tuned visual encoder ({len(visual)} tensors); give --cache STORE, the "
                        "store of the backbone it started from, or --no-backbone to import the head only")
    from mdmf.pipeline.features.backbones import file_sha256

    imported = {"checkpoint": str(path.resolve()), "sha256": file_sha256(path), "authors_head": authors_head,
                "model": kmap.model, "step": step, "ema": req.ema, "visual_encoder": with_visual,
                "ignored": sorted([k for k in head if is_ignored(k, kmap)] + left_out)}
    _write_run(run, model, store, step, imported, cfg, visual if with_visual else None)
    return imported


def train_record(run, model, store, step: int, cfg: dict | None, stage: str) -> dict:
    """The `train` record of an imported run: where it belongs (stage, store, run folder, model) and the episodes
    the authors trained on (their cfg's way, shot, queries; mdmf's defaults without one). No optimisation
    settings: mdmf did not train it, and `--resume` has no last.pt to continue from."""
    theirs = (cfg or {}).get("TRAIN", {})
    episodes = {"way": 5, "shot": 1, "queries": 5}
    episodes.update({k: int(theirs[v]) for k, v in {"way": "WAY", "shot": "SHOT", "queries": "QUERY_PER_CLASS"}.items()
                     if isinstance(theirs.get(v), int)})
    return {"stage": stage, "store": str(store.path) if store else "", "run_dir": str(run),
            "model": model.config.to_dict(), **episodes, "steps": step, "imported": True}


def _write_run(run, model, store, step: int, imported: dict, cfg: dict | None, visual: dict | None) -> None:
    """config.json, best.pt (and visual.pt) in the layout `mdmf train` writes, so every command reads them."""
    from mdmf.pipeline.core.checkpoint import save_atomic

    stage = "e2e" if visual is not None else "head"
    train = train_record(run, model, store, step, cfg, stage)
    identity = store.meta.identity if store else None
    location = run.store_location(store.path) if store else None
    run.start({"train": train, "model": model.config.to_dict(), "store": identity,
               "store_location": location, "imported": imported})
    if visual is not None:
        _write_visual(run, visual, step, store)
    save_atomic({"model": model.state_dict(), "model_config": model.config.to_dict(), "train_config": train,
                 "step": step, "best": None, "store_identity": identity, "stage": stage,
                 "store_location": location, "imported": imported}, run.best)


def _write_visual(run, visual: dict, step: int, store) -> None:
    """visual.pt, after loading the weights into the store's backbone (their names are OpenAI CLIP's, which
    open_clip's visual encoders keep): a mismatch is one line, not a broken run."""
    from types import SimpleNamespace

    from mdmf.pipeline.features.recipe import load_store_backbone
    from mdmf.pipeline.runs import save_run_visual

    asked = SimpleNamespace(backbone=None, weights=None, frames=None)  # nothing asked: the store's own backbone
    backbone, ecfg = load_store_backbone(store, asked, torch.device("cpu"))
    try:
        backbone.model.visual.load_state_dict(visual)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:240]
        raise MdmfError(f"the checkpoint's visual encoder does not fit the store's backbone "
                        f"{store.meta.backbone.get('backbone')} ({detail}); give the "
                        "store extracted with the backbone the authors fine-tuned, or --no-backbone") from None
    save_run_visual(run, backbone.model.visual.state_dict(), step, backbone.spec, backbone.weights_sha256, ecfg)
