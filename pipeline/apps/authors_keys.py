"""The authors' checkpoints as data: what a CLIP-FSAR or CLIP-MDMF checkpoint holds, and their key names -> ours.

Layouts read (their save code):
* CLIP-FSAR (`utils/checkpoint.py` `save_checkpoint`): `{"epoch", "model_state", "optimizer_state", "cfg",
  ["model_ema_state"]}`, `cfg` the JSON text of the whole config; the model is a `BaseVideoModel` whose `backbone` is
  an Identity and whose `head` (e.g. `CNN_OTAM_CLIPFSAR`) holds the CLIP visual encoder as `head.backbone.*`.
* CLIP-MDMF (`run_clip_fsar_decison_now.py`): `checkpoint<N>.pt` = `{"iteration", "model_state_dict",
  "optimizer_state_dict", "scheduler"}`, the final file the bare `model.state_dict()`; the visual encoder is
  `backbone.*`, `backbone.module.*` when it was spread over GPUs with `DataParallel`. No config is saved.
`module.` (DistributedDataParallel / DataParallel) is dropped wherever it occurs in a key.

Key maps: one JSON file per mdmf head in `pipeline/assets/authors/<model>.json` (see `clip-fsar.json`): which of the
authors' head classes it reads (`authors_heads`), keys that identify it when no config says (`detect`), the model
settings that make it the authors' computation (`model`, then the shipped `preset` when there is one), settings read
from the authors' config (`from_config`, `!` negates) or from the weights' shapes (`infer`), and the key rules:
`{"from": "context2.layers.{n}.", "to": "blocks.{n}.", "part": "transformer_v1"}` renames a prefix (`{n}` a
number), the rest of the key taken through a shared table of `_parts.json` when `part` is given, kept otherwise; a
`from` without a final `.` is one key. `ignore`: the authors' keys with no counterpart, each with the reason (`{n}`
allowed). `optional`: the authors' keys that are mapped when the model built from the settings has them and left
out (listed as ignored) when it has none (HyRSM's frame classifier, built by their code even when it is never
trained). `variants`: per authors' head class (the config's `VIDEO.HEAD.NAME`), a `preset`, `model` settings and
`from_config` entries that replace the map's (HyRSM's 1-shot / 5-shot / ++ classes). `refused`: a head whose
checkpoints are refused, with the reason (its map names it so that the refusal says why). `infer` entries read our
mapped weights, or the authors' head weights as saved (ignored keys included) with `"theirs": true`; `"each"` gives
one size per numbered module (TRX's cardinalities).
A new head adds its file; nothing here names heads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mdmf.pipeline.core.errors import MdmfError

MAPS = Path(__file__).resolve().parents[1] / "assets" / "authors"
PARTS = "_parts.json"


@dataclass
class KeyMap:
    model: str  # the mdmf head (a name of MODELS)
    description: str
    authors_heads: list[str]
    detect: list[str]
    model_settings: dict
    preset: str | None = None
    from_config: dict = field(default_factory=dict)
    infer: dict = field(default_factory=dict)
    keys: list[dict] = field(default_factory=list)
    ignore: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)
    refused: str | None = None

    def variant(self, authors_head: str | None) -> dict:
        """The authors' head class's `preset` (else the map's), its `model` settings (applied after the preset) and
        the map's `from_config` with the class's added."""
        chosen = self.variants.get(authors_head or "", {})
        return {"preset": chosen.get("preset", self.preset), "model": dict(chosen.get("model", {})),
                "from_config": {**self.from_config, **chosen.get("from_config", {})}}


def key_maps() -> dict[str, KeyMap]:
    """mdmf head name -> its `KeyMap`, for every map file whose head is in MODELS."""
    from mdmf.registry import MODELS

    maps = {}
    for path in sorted(MAPS.glob("*.json")):
        if path.name == PARTS or path.stem not in MODELS:
            continue
        data = json.loads(path.read_text())
        maps[path.stem] = KeyMap(model=path.stem, description=data.get("description", ""),
                                 authors_heads=list(data["authors_heads"]), detect=list(data.get("detect", [])),
                                 model_settings=dict(data.get("model", {})), preset=data.get("preset"),
                                 from_config=dict(data.get("from_config", {})), infer=dict(data.get("infer", {})),
                                 keys=list(data.get("keys", [])), ignore=dict(data.get("ignore", {})),
                                 optional=dict(data.get("optional", {})), variants=dict(data.get("variants", {})),
                                 refused=data.get("refused"))
    return maps


def parts() -> dict[str, list[list[str]]]:
    return {k: v for k, v in json.loads((MAPS / PARTS).read_text()).items() if k != "description"}


def _pattern(template: str) -> re.Pattern:
    """`context2.layers.{n}.` -> a regex matching the key's start, `{n}` a number."""
    return re.compile(re.escape(template).replace(re.escape("{n}"), r"(?P<n>\d+)"))


def rename(key: str, kmap: KeyMap, tables: dict) -> str | None:
    """The mdmf name of one of the authors' head keys, or None when no rule covers it."""
    for rule in kmap.keys:
        source, target = rule["from"], rule["to"]
        match = _pattern(source).match(key)
        if not match or (not source.endswith(".") and match.end() != len(key)):
            continue
        head = target.replace("{n}", match.group("n")) if "{n}" in source else target
        rest = key[match.end():]
        if "part" not in rule:
            return head + rest
        for theirs, ours in tables[rule["part"]]:
            if rest.startswith(theirs):
                return head + ours + rest[len(theirs):]
        return None
    return None


def covers(template: str, key: str) -> bool:
    """Whether an `ignore` / `optional` entry covers the key: the key itself, or a prefix ending in `.`; `{n}` a
    number."""
    match = _pattern(template).match(key)
    return bool(match) and (template.endswith(".") or match.end() == len(key))


def is_ignored(key: str, kmap: KeyMap) -> bool:
    return any(covers(k, key) for k in kmap.ignore)


def map_head_keys(head: dict, kmap: KeyMap) -> tuple[dict, list[str], dict[str, str]]:
    """(our state dict, the authors' keys no rule covers, our key -> the authors' key it came from) of the authors'
    head weights; ignored keys are dropped."""
    tables, ours, unmapped, origin = parts(), {}, [], {}
    for key, value in head.items():
        if is_ignored(key, kmap):
            continue
        name = rename(key, kmap, tables)
        if name is None:
            unmapped.append(key)
        else:
            ours[name], origin[name] = value, key
    return ours, unmapped, origin


def drop_wrappers(state: dict) -> dict:
    """`module.` of (Distributed)DataParallel removed wherever it occurs in a key."""
    return {".".join(p for p in key.split(".") if p != "module"): value for key, value in state.items()}


def config_value(cfg: dict, spec) -> object:
    """A setting from the authors' nested config: `"TRAIN.MERGE_BEFORE"`, `"!TRAIN.SINGLE_DIRECT"` (negated), or
    `{"key": ..., "when": ..., "otherwise": ...}` (`when` one setting or a list, all of which must be set and true,
    else `otherwise`, the value their code takes then); `KeyError` when the config does not have it."""
    if isinstance(spec, dict):
        when = spec.get("when") or []
        if not all(_lookup(cfg, w, False) for w in ([when] if isinstance(when, str) else when)):
            return spec["otherwise"]
        return _lookup(cfg, spec["key"])
    if spec.startswith("!"):
        return not _lookup(cfg, spec[1:], False)
    return _lookup(cfg, spec)


_MISSING = object()


def _lookup(cfg: dict, dotted: str, default=_MISSING):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node or node[part] in (None, ""):
            if default is _MISSING:
                raise KeyError(dotted)
            return default
        node = node[part]
    return node


def inferred(ours: dict, theirs: dict, spec: dict) -> int | list[int] | None:
    """A size read from the mapped weights (`ours`), or with `"theirs": true` from the authors' head weights as
    saved: a tensor's length along an axis (`key`), how many numbered blocks exist (`count`), or the length of
    each numbered module's tensor in the order of the numbers (`each`); None when the weights do not have it."""
    weights = theirs if spec.get("theirs") else ours
    if "count" in spec:
        pattern = _pattern(spec["count"])
        found = {m.group("n") for key in weights if (m := pattern.fullmatch(key))}
        return len(found) or None
    if "each" in spec:
        pattern = _pattern(spec["each"])
        found = {int(m.group("n")): value for key, value in weights.items() if (m := pattern.fullmatch(key))}
        return [int(found[n].shape[spec["axis"]]) for n in sorted(found)] or None
    value = weights.get(spec["key"])
    return None if value is None else int(value.shape[spec["axis"]])


def choose_map(maps: dict[str, KeyMap], head: dict, authors_head: str | None, asked: str | None) -> KeyMap:
    """The map of `--head` (mdmf name), else of the authors' head class named in their config, else the one whose
    `detect` keys the weights hold (of several, the one whose rules cover every key); one line naming what exists
    when none fits."""
    known = ", ".join(f"{m.model} ({'/'.join(m.authors_heads)})" for m in maps.values())
    if asked:
        if asked not in maps:
            raise MdmfError(f"--head {asked}: no key map for it; heads with one: {known}")
        return maps[asked]
    if authors_head:
        for kmap in maps.values():
            if authors_head in kmap.authors_heads:
                return kmap
        raise MdmfError(f"the checkpoint's config names the head {authors_head}, which mdmf cannot import; heads "
                        f"it can: {known}")
    found = [m for m in maps.values() if m.detect and all(k in head for k in m.detect)]
    if len(found) > 1:  # e.g. CLIP-MDMF's model holds CLIP-FSAR's `context2` too: the map that covers every key,
        # else a map that refuses the head (STRM's weights hold TRX's transformers too)
        found = [m for m in found if not map_head_keys(head, m)[1]] or [m for m in found if m.refused]
    if len(found) != 1:
        raise MdmfError("the checkpoint has no config saying which head it is, and its keys "
                        f"{'fit none' if not found else 'fit several'} of the known heads; give --head NAME ({known})")
    return found[0]
