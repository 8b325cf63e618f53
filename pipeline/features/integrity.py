"""Finding a damaged feature store: per-unit digests, the check on load, and repair by marking units pending.

A unit (one chunk of `chunk_videos` videos) records, before its `status` chunk, one CRC32C per array it wrote
(`features`, `frame_indices`, `status`, `errors`, and `frames` where the store has it) in the split's `digests`
array (units, arrays) int64, one chunk per unit, -1 until written. CRC32C rather than sha256: it catches every
damage a copy or a full disk does (a missing chunk reads as the fill value, a truncated or random one does not
decode or differs, a flipped byte changes the CRC) at a quarter of sha256's cost (measured in BENCHMARKS.md:
"store integrity check"), and it is a digest of what was written, so a store stays byte-identical on rerun.

Loading a split reads its arrays whole (the fast path); an array that does not decode is read again unit by unit to
find the bad chunks. Every finished unit's slice is then compared with its digests. A damaged unit is refused in one
line naming the split, the units and the repair: `mdmf extract` (the same command) marks damaged units pending and
redoes exactly those; `mdmf cache verify PATH --repair` marks them without extracting.

Stores written before digests existed have no `digests` array: they still load, with a weaker check (every finished
unit with a usable video has its `features` and `frame_indices` chunk files, and every chunk decodes); flipped bytes
cannot be found there. `mdmf cache verify PATH --record` records digests of the data as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass

import google_crc32c
import numpy as np

from mdmf.pipeline.core.errors import MdmfError

DIGESTS = "digests"
ALGORITHM = "crc32c"
DIGESTED = ("features", "frame_indices", "status", "errors", "frames")  # in this order; frames only where present
ON_LOAD = ("features", "frame_indices", "status")  # what `FeatureStore.load` reads (errors and frames: verify)
_PENDING, _OK, _SHORT = 0, 1, 3


@dataclass(frozen=True)
class Damage:
    """One damaged unit of a split and what is wrong with it."""

    split: str
    unit: int
    rows: range
    problems: tuple[str, ...]  # e.g. "features: chunk missing"

    def to_json(self) -> dict:
        return {"split": self.split, "unit": self.unit, "rows": [self.rows.start, self.rows.stop - 1],
                "problems": list(self.problems)}


def digested_names(has_frames: bool) -> tuple[str, ...]:
    return tuple(n for n in DIGESTED if n != "frames" or has_frames)


def crc(values) -> int:
    """CRC32C of an array's bytes (strings: their UTF-8, NUL-separated), as written and as read back."""
    values = np.asarray(values)
    if values.dtype.kind in "UOT":
        return google_crc32c.value("\x00".join(str(v) for v in values.ravel()).encode())
    view = np.ascontiguousarray(values).view()
    view.flags.writeable = False  # google_crc32c reads read-only buffers only (no copy)
    return google_crc32c.value(view)


def create_digests(group, num_units: int, names: tuple[str, ...]) -> None:
    """The empty `digests` array of a new split (-1: not written)."""
    # uncompressed: each unit's chunk file is its A int64 as they are, read without Zarr's per-chunk cost
    group.create_array(DIGESTS, shape=(num_units, len(names)), chunks=(1, len(names)), dtype="<i8",
                             fill_value=-1, compressors=None)


def unit_digests(written: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """(1, arrays) the digests of one unit's slices, in the order of `names`."""
    return np.asarray([[crc(written[n]) for n in names]], dtype=np.int64)


def _read(store, split: str, name: str) -> tuple[np.ndarray, set[int]]:
    """The whole array, and the units whose chunks did not decode (read as the fill value)."""
    arr = store.array(split, name)
    try:
        return arr[:], set()
    except Exception:  # a truncated or garbage chunk: find which, unit by unit
        pass
    out = np.full(arr.shape, arr.fill_value, dtype=arr.dtype)
    bad = set()
    per_chunk = arr.chunks[0]
    for unit in range(-(-arr.shape[0] // per_chunk)):
        sl = slice(unit * per_chunk, min((unit + 1) * per_chunk, arr.shape[0]))
        try:
            out[sl] = arr[sl]
        except Exception:
            bad.add(unit)
    return out, bad


def _read_digests(store, split: str) -> tuple[np.ndarray, set[int]]:
    """The `digests` array and its units whose chunk is not A int64. Read file by file: through Zarr, one small
    chunk per unit cost as much as the CRC of all the features (BENCHMARKS.md, "Store integrity check")."""
    arr = store.array(split, DIGESTS)
    codecs = arr.metadata.codecs
    if len(codecs) != 1 or getattr(getattr(codecs[0], "endian", None), "value", None) != "little":
        return _read(store, split, DIGESTS)  # not as `create_digests` writes it (compressed, big-endian)
    out = np.full(arr.shape, -1, dtype=np.int64)
    bad, folder, size = set(), store.path / split / DIGESTS, 8 * arr.shape[1]
    for unit in range(arr.shape[0]):
        try:
            data = (folder / arr.metadata.encode_chunk_key((unit, 0))).read_bytes()
        except FileNotFoundError:
            continue  # not written: -1
        if len(data) != size:
            bad.add(unit)
        else:
            out[unit] = np.frombuffer(data, dtype="<i8")
    return out, bad


def _chunk_missing(store, split: str, name: str, unit: int) -> bool:
    arr = store.array(split, name)
    key = arr.metadata.encode_chunk_key((unit,) + (0,) * (arr.ndim - 1))
    return not (store.path / split / name / key).is_file()


def has_digests(store, split: str) -> bool:
    return DIGESTS in store.group(split)


def check_split(store, split: str, names: tuple[str, ...] | None = None) -> tuple[dict[str, np.ndarray], list[Damage]]:
    """Read `names` of `split` (default: every digested array) and check every finished unit. Returns the arrays
    (damaged units' slices as read) and the damaged units."""
    stored = store.array(split, DIGESTS) if has_digests(store, split) else None
    order = digested_names("frames" in store.group(split))  # the digests' columns
    want = names or order
    names = tuple(n for n in order if n in want or n == "status")  # status: which units are finished
    arrays, unreadable = {}, {}
    for name in names:
        arrays[name], unreadable[name] = _read(store, split, name)
    digests, bad_digests = _read_digests(store, split) if stored is not None else (None, set())
    status = arrays["status"]
    per_chunk = store.chunk_videos
    damages = []
    for unit in range(-(-status.shape[0] // per_chunk)):
        sl = slice(unit * per_chunk, min((unit + 1) * per_chunk, status.shape[0]))
        if unit not in unreadable["status"] and np.any(status[sl] == _PENDING):
            continue  # not finished: extract does it (a status chunk is written whole, last)
        problems = [f"{n}: chunk does not decode" for n in names if unit in unreadable[n]]
        if digests is not None:
            if unit in bad_digests or np.any(digests[unit] < 0):
                problems.append("digests: missing for a finished unit")
            else:
                for n in names:
                    if unit not in unreadable[n] and crc(arrays[n][sl]) != digests[unit, order.index(n)]:
                        missing = _chunk_missing(store, split, n, unit)
                        problems.append(f"{n}: chunk {'missing' if missing else 'does not match its digest'}")
        elif np.any((status[sl] == _OK) | (status[sl] == _SHORT)):
            problems += [f"{n}: chunk missing" for n in ("features", "frame_indices")
                         if n in names and unit not in unreadable[n] and _chunk_missing(store, split, n, unit)]
        if problems:
            damages.append(Damage(split, unit, range(sl.start, sl.stop), tuple(problems)))
    return arrays, damages


def damage_message(store, split: str, damages: list[Damage]) -> str:
    """One line: which units of which split, what is wrong, and how to repair."""
    shown = ", ".join(f"{d.unit} (videos {d.rows.start}-{d.rows.stop - 1}: {'; '.join(d.problems)})"
                      for d in damages[:3])
    more = f" and {len(damages) - 3} more" if len(damages) > 3 else ""
    return (f"{store.path}: split {split} is damaged: unit{'s' if len(damages) > 1 else ''} {shown}{more}; run the "
            f"`mdmf extract` that made it again (it redoes exactly the damaged units and keeps the rest), or "
            f"`mdmf cache verify {store.path} --repair` to mark them pending")


def mark_pending(store, split: str, units) -> None:
    """Make `units` pending again (status and digests back to their fill values): `mdmf extract` redoes them."""
    for unit in units:
        rows = store.unit_rows(split, unit)
        store.array(split, "status")[rows.start:rows.stop] = _PENDING
        if has_digests(store, split):
            store.array(split, DIGESTS)[unit:unit + 1] = -1


def repair(store, splits, shard: int = 0, num_shards: int = 1) -> dict[str, list[int]]:
    """Check `splits` and mark the damaged units of this shard pending; returns them per split."""
    marked = {}
    for split in splits:
        _, damages = check_split(store, split)
        units = [d.unit for d in damages if d.unit % num_shards == shard]
        if units:
            mark_pending(store, split, units)
            marked[split] = units
    return marked


def record(store, split: str) -> int:
    """A store made before digests: create `digests` and record those of every finished unit as the data is now
    (units whose chunks are missing or do not decode are marked pending instead). Returns the units recorded."""
    if has_digests(store, split):
        return 0
    arrays, damages = check_split(store, split)
    if damages:
        mark_pending(store, split, [d.unit for d in damages])
        arrays["status"] = store.status(split)
    names = digested_names("frames" in store.group(split))
    create_digests(store.group(split), store.num_units(split), names)
    done = 0
    for unit in range(store.num_units(split)):
        rows = store.unit_rows(split, unit)
        if np.any(arrays["status"][rows.start:rows.stop] == _PENDING):
            continue
        written = {n: arrays[n][rows.start:rows.stop] for n in names}
        store.array(split, DIGESTS)[unit:unit + 1] = unit_digests(written, names)
        done += 1
    return done


def check_layout(store, split: str) -> None:
    """The root attributes agree with the arrays (frames, width): an edited or mixed-up attribute file is refused."""
    meta, shape = store.meta, store.array(split, "features").shape
    expected = {"frames": shape[2], "dim": shape[3]}
    for key, actual in expected.items():
        for where, value in (("", getattr(meta, key)), ("identity.", meta.identity.get(key, actual))):
            if value != actual:
                raise MdmfError(f"{store.path}: the store's attributes say {where}{key}={value!r} but split {split}'s "
                                f"features hold {key}={actual} (zarr.json edited or mixed up); restore the store's "
                                "zarr.json, or delete it and extract again")


_WRITTEN_AT_CREATION = ("video_ids", "paths", "labels", "class_names", "prompts", "prompt_embeddings")


def _verify_split(store, split: str, repair: bool, record_missing: bool) -> dict:
    """`verify_store` for one split."""
    out = {"units": store.num_units(split), "digests": has_digests(store, split), "damaged": [], "unrepairable": [],
           "marked_pending": [], "recorded": 0}
    try:
        check_layout(store, split)
        for name in _WRITTEN_AT_CREATION:  # not per unit: a damaged one is not redone by extract
            arr = store.array(split, name)  # damaged metadata: MdmfError, below
            try:
                arr[:]
            except Exception as err:
                out["unrepairable"].append(f"{name}: does not decode ({type(err).__name__})")
        _, damages = check_split(store, split)
    except MdmfError as err:  # damaged metadata or attributes
        out["unrepairable"].append(str(err))
        return out
    out["damaged"] = [d.to_json() for d in damages]
    status = store.status(split)
    rows = (store.unit_rows(split, u) for u in range(out["units"]))
    out["finished"] = int(sum(not np.any(status[r.start:r.stop] == _PENDING) for r in rows))
    if (repair or record_missing) and damages:  # recording digests of damaged data would hide the damage
        mark_pending(store, split, [d.unit for d in damages])
        out["marked_pending"] = [d.unit for d in damages]
    if record_missing and not out["digests"]:
        out["recorded"] = record(store, split)
    return out


def verify_store(store, repair: bool = False, record_missing: bool = False) -> dict:
    """What `mdmf cache verify` reports: per split, the damaged units (and, with `repair`, those marked pending;
    with `record_missing`, the digests recorded for a store made before digests). `ok`: nothing is left damaged."""
    splits = {split: _verify_split(store, split, repair, record_missing) for split in store.splits}
    left = any(s["unrepairable"] or (s["damaged"] and not s["marked_pending"]) for s in splits.values())
    return {"path": str(store.path), "algorithm": ALGORITHM, "ok": not left, "splits": splits}
