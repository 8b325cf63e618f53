"""Presets: small JSON files of overrides of the config defaults, by name or by path (`--preset reference`).

A preset has up to three sections, each holding only overrides of that config's dataclass defaults:

    {"description": "...",
     "model":   {ModelConfig fields},          # mdmf train (heads)
     "train":   {TrainConfig fields},          # mdmf train (optimisation)
     "extract": {ExtractConfig fields}}        # mdmf extract (stage one)

A file without any of these sections is read as model overrides (the format `--preset` took before sections).
Shipped presets live in `pipeline/presets/<name>.json` (the ablation tables there are read by `mdmf ablate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mdmf.pipeline.core.errors import MdmfError

PRESETS = Path(__file__).resolve().parents[1] / "presets"
SECTIONS = ("model", "train", "extract")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    extract: dict = field(default_factory=dict)


def shipped_presets() -> list[str]:
    """Names usable as `--preset NAME` (the ablation tables are `mdmf ablate --table N`, not presets)."""
    return sorted(p.stem for p in PRESETS.glob("*.json") if not p.stem.startswith("ablation_table"))


def load_preset(spec: str | Path) -> Preset:
    """A shipped preset by name (`reference`), or a JSON file by path; raises `MdmfError` naming what exists."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = PRESETS / f"{spec}.json"
        if not path.is_file() or path.stem.startswith("ablation_table"):
            raise MdmfError(f"--preset {spec}: no such preset; shipped presets: {', '.join(shipped_presets())} "
                            "(or give the path of a JSON file)")
    if not path.is_file():
        raise MdmfError(f"--preset {spec}: file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MdmfError(f"--preset {path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise MdmfError(f"--preset {path}: must be a JSON object of settings")
    if not any(s in data for s in SECTIONS):  # the older flat form: model overrides only
        return Preset(name=path.stem, model=data)
    unknown = sorted(set(data) - {*SECTIONS, "description"})
    if unknown:
        raise MdmfError(f"--preset {path}: unknown sections {unknown}; a preset has {', '.join(SECTIONS)} "
                        "and a description")
    for s in SECTIONS:
        if not isinstance(data.get(s, {}), dict):
            raise MdmfError(f"--preset {path}: section {s!r} must be an object of settings")
    return Preset(name=path.stem, description=str(data.get("description", "")),
                  **{s: dict(data.get(s, {})) for s in SECTIONS})


def store_differences(preset: Preset, identity: dict) -> list[str]:
    """`setting=store value (preset: value)` for each setting of the preset's `extract` section that a store
    (its identity, as `FeatureStore.meta.identity`) was made with otherwise: training a preset's heads on such a
    store is not the preset's computation. Settings the identity does not record are not compared."""
    return [f"{key}={identity[key]!r} (preset: {value!r})" for key, value in preset.extract.items()
            if key in identity and identity[key] != value]
