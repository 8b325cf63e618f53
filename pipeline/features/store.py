"""The feature store: one Zarr v3 directory holding the CLIP features of a dataset's splits.

Layout (`V` videos of a split, `K` views per video, `T` frames, `D` width, `S` image size)::

    <store>/                      root attributes: {"mdmf": {schema_version, config, backbone, ...}}
      <split>/                    one group per split (train, val, test)
        features       (V, K, T, D) float16   frame embeddings, not normalised
        frame_indices  (V, K, T)    int32     the decoded frame index behind each embedding
        status         (V,)         int8      0 pending, 1 ok, 2 failed, 3 ok but shorter than T frames
        errors         (V,)         str       the reason for a failure ('' otherwise)
        video_ids      (V,)         str       as in the split file
        paths          (V,)         str       the resolved file ('' when it was not found)
        labels         (V,)         int32     class id within the split
        class_names    (C,)         str       class id order
        prompts        (C,)         str       the exact prompt strings given to the text encoder
        prompt_embeddings (C, D)    float32   text embeddings (NaN until written)
        frames         (V, K, T, S, S, 3) uint8   only with --save-frames: the cropped frames that were encoded
        digests        (U, A)       int64     per unit, the CRC32C of what it wrote in each array (features/integrity.py)

Crash safety: the arrays are chunked by `chunk_videos` videos, a unit of work is exactly one chunk, and Zarr's
local store writes every chunk file atomically (temporary file, then rename). A unit writes its features and frame
indices first, then its digests, and its `status` chunk last, so a unit is either done or pending; after `kill -9` the rerun redoes at
most the units that were in flight. Shards (`--shard i/n`) own disjoint units, so they never write the same chunk.
Attributes are written once, when the store is created, and never rewritten; the empty store is built in a hidden
sibling folder and renamed into place, so creation is atomic too.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import zarr

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.paths import DeferredWriteErrors, check_output_file, is_disk_full, local_path
from mdmf.pipeline.data.datasets import default_store_path, stores_folder
from mdmf.pipeline.data.views import FAILED, OK, SHORT
from mdmf.pipeline.features import integrity

SCHEMA_VERSION = 1
PENDING = 0  # not processed yet; the other codes are what decoding gave (`pipeline.data.views`)
STATUS_NAMES = {PENDING: "pending", OK: "ok", FAILED: "failed", SHORT: "short"}
# Identity entries added after stores already existed: a store without one was made the old way, read as this value
# (so it still opens and resumes with the old settings, and a resume with other settings fails naming the entry).
IDENTITY_DEFAULTS = {"frame_sampling": "tsn", "normalize": "clip", "crop": "tsn",
                     # frames read with decord's get_batch, not exact on every file: never resumed by the exact reader
                     "decoder": "decord", "reader": "decord-get_batch"}


@dataclass(frozen=True)
class StoreMeta(Mapping):
    """The store's root attributes, read once, with every default applied here and nowhere else.

    Typed fields for code; as a read-only mapping it is the attributes as `export_h5` and `cache info` write them
    (the identity with its defaults), so scripts that indexed the old dict keep working.
    """

    schema_version: int
    identity: dict  # every setting that changes the stored numbers, with IDENTITY_DEFAULTS for older stores
    chunk_videos: int  # videos per chunk = unit of resumable work
    frames: int  # T
    dim: int  # D
    backbone: dict = field(default_factory=dict)  # `Backbone.describe()` of the encoder the features came from
    config: dict = field(default_factory=dict)  # the `ExtractConfig` it was made with (runtime settings left out)
    versions: dict = field(default_factory=dict)  # package versions of the run that created the store
    extra: dict = field(default_factory=dict)  # any other attribute (kept as written)

    @classmethod
    def from_attrs(cls, attrs: Mapping) -> "StoreMeta":
        """From the `mdmf` root attribute (or any mapping of the same form, e.g. an earlier `to_dict`)."""
        attrs = dict(attrs)
        known = {f.name for f in fields(cls)} - {"extra"}
        typed = {k: attrs.pop(k) for k in known if k in attrs}
        typed["identity"] = {**IDENTITY_DEFAULTS, **typed.get("identity", {})}
        for name in ("schema_version", "chunk_videos", "frames", "dim"):
            typed[name] = int(typed[name])
        return cls(**typed, extra=attrs)

    @classmethod
    def of(cls, meta: "StoreMeta | Mapping") -> "StoreMeta":
        """`meta` itself, or a plain mapping of the attributes read as one."""
        return meta if isinstance(meta, StoreMeta) else cls.from_attrs(meta)

    def made_as(self, identity: dict) -> bool:
        """Whether this store's identity is `identity` (as recorded by a run; entries it lacks read as their
        IDENTITY_DEFAULTS, as the store's own do)."""
        return self.identity == {**IDENTITY_DEFAULTS, **identity}

    @property
    def flip(self) -> bool:
        """Whether train views were flipped (a store written without the entry: yes, the old behaviour)."""
        return bool(self.identity.get("flip", True))

    def to_dict(self) -> dict:
        return {**self.extra, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}}

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass
class SplitLayout:
    """What one split of a new store will hold."""

    video_ids: list[str]
    paths: list[str]
    labels: np.ndarray  # (V,) int
    class_names: list[str]
    prompts: list[str]
    views: int


@dataclass
class SplitFeatures:
    """A split's usable features in memory (failed videos left out)."""

    features: np.ndarray  # (V, K, T, D) float16
    labels: np.ndarray  # (V,) int64, class id within the split
    video_ids: list[str]
    class_names: list[str]
    prompts: list[str]
    prompt_embeddings: np.ndarray  # (C, D) float32
    frame_indices: np.ndarray  # (V, K, T) int32
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # row of each video in the store


def _creation_folder(path: Path) -> Path:
    """A fresh hidden sibling of `path` to build a new store in, named after this host and process; leftovers of
    processes of this host that are gone (killed mid-creation) are removed first."""
    host = socket.gethostname().replace("-", "_")
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.creating-{host}-"
    for old in path.parent.glob(f"{prefix}*"):
        try:
            os.kill(int(old.name[len(prefix):]), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except (ValueError, PermissionError):
            continue
    tmp = path.parent / f"{prefix}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _strings(values) -> np.ndarray:
    return np.asarray(list(values), dtype=str) if len(values) else np.zeros(0, dtype=str)


def is_store(path: Path) -> bool:
    """Whether `path` is a Zarr group (a feature store, or one an older mdmf began); `FeatureStore.open` checks more."""
    return (Path(path) / "zarr.json").is_file()


def stores_in(folder: Path) -> list[Path]:
    """The feature stores directly inside `folder` (`cache/<dataset>/<backbone>`), sorted by name; [] if none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and is_store(p))


def stores_beside(path: Path) -> str:
    """For a store that is not at `path`: the stores in its folder, as words ("stores in cache/x: tiny, RN50")."""
    found = [p.name for p in stores_in(Path(path).parent)]
    return f"stores in {Path(path).parent}: {', '.join(found)}" if found else f"no store in {Path(path).parent}"


def find_store(dataset: str | None, backbone: str | None = None) -> Path:
    """The store a command that takes a dataset reads: `cache/<dataset>/<backbone>` when the backbone is given, else
    the dataset's only store; several are listed (choose with --backbone), none is one line saying to extract."""
    if backbone:
        return default_store_path(dataset, backbone)
    folder = stores_folder(dataset)
    found = stores_in(folder)
    if len(found) == 1:
        return found[0]
    if found:
        raise MdmfError(f"dataset {dataset}: {len(found)} feature stores in {folder} "
                        f"({', '.join(p.name for p in found)}); choose one with --backbone NAME or --cache PATH")
    raise MdmfError(f"dataset {dataset}: no feature store in {folder}; extract one first (`mdmf extract --dataset "
                    f"{dataset} --backbone NAME ...`) or give --cache PATH")


class FeatureStore:
    """A feature store on disk. Create with `FeatureStore.create_or_open`, read with `FeatureStore.open`."""

    def __init__(self, path: Path, root: zarr.Group, meta: StoreMeta | None = None):
        self.path = Path(path)
        self.root = root
        # Zarr opens a node by reading its metadata from disk: keep the handles (the layout never changes).
        self._groups: dict[str, zarr.Group] = {}
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._meta = meta  # None: read from `root` when first asked for

    # ---- opening -------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, mode: str = "r") -> "FeatureStore":
        path = local_path(path, "store")  # a file:// URL is its path; other URLs are refused in one line
        if not is_store(path):
            raise MdmfError(f"{path}: no feature store here ({stores_beside(path)}); create one with `mdmf extract` "
                            "(or check --cache/--out)")
        try:
            root = zarr.open_group(str(path), mode=mode)
        except Exception as err:  # a damaged zarr.json
            raise MdmfError(f"{path}: cannot open the feature store ({err}); delete it and extract again") from None
        meta = dict(root.attrs).get("mdmf")
        if not meta:
            raise MdmfError(f"{path}: a Zarr group, but not an mdmf feature store (no 'mdmf' attributes; a store "
                            "whose creation an older mdmf did not finish looks like this): delete it and extract again")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise MdmfError(
                f"{path}: store schema version {meta.get('schema_version')}, this mdmf reads {SCHEMA_VERSION}; "
                "extract again into a new --out"
            )
        return cls(path, root, StoreMeta.from_attrs(meta))

    @classmethod
    def create_or_open(
        cls,
        path: Path | str,
        meta: dict,
        identity: dict,
        layouts: dict[str, SplitLayout],
        frames: int,
        dim: int,
        chunk_videos: int = 16,
        image_size: int | None = None,
    ) -> "FeatureStore":
        """Open the store at `path` if it was made with the same `identity`, else create it.

        `identity` holds every setting that changes the stored numbers; a store made with other settings is never
        mixed into: the error names the first differing attribute. `image_size` adds the `frames` array.

        Creation is atomic: the whole empty store, attributes included, is built in a hidden sibling folder and
        renamed to `path`, so a `kill -9` at any moment leaves either no store or a complete empty one (the rerun
        resumes either way). Shards started together race on the rename: the losers open the winner's store.
        """
        path = local_path(path, "--out")  # before anything is created: never a local folder named `s3:`
        created = False
        if not (path / "zarr.json").is_file():
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise MdmfError(f"{path}: exists and is not a feature store; use another --out, or delete it")
            if any(part.is_file() for part in path.parents):
                raise MdmfError(f"--out {path}: a part of {path.parent} is a file, not a folder; use another --out")
            tmp = _creation_folder(path)
            try:
                cls._build(tmp, meta, identity, layouts, frames, dim, chunk_videos, image_size)
            except OSError as err:
                shutil.rmtree(tmp, ignore_errors=True)
                if is_disk_full(err):
                    raise MdmfError(f"{path}: no space left on the device while creating the store (nothing was "
                                    "written); free space and run the command again") from None
                raise
            try:
                if path.is_dir():
                    path.rmdir()  # an empty folder given as --out
                tmp.rename(path)
                created = True
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                if not (path / "zarr.json").is_file():  # not another shard's store either
                    raise
        store = cls.open(path, mode="r+")
        if not created:
            store._check_identity(identity)
        return store

    @staticmethod
    def _build(path: Path, meta: dict, identity: dict, layouts: dict[str, SplitLayout], frames: int, dim: int,
               chunk_videos: int, image_size: int | None) -> None:
        """Write a complete empty store at `path` (a fresh folder)."""
        root = zarr.open_group(str(path), mode="w")
        for split, lay in layouts.items():
            g = root.create_group(split, overwrite=True)
            n, k, c = len(lay.video_ids), lay.views, chunk_videos
            g.create_array("features", shape=(n, k, frames, dim), chunks=(c, k, frames, dim), dtype="float16",
                           compressors=None, fill_value=0)
            g.create_array("frame_indices", shape=(n, k, frames), chunks=(c, k, frames), dtype="int32", fill_value=-1)
            g.create_array("status", shape=(n,), chunks=(c,), dtype="int8", fill_value=PENDING)
            g.create_array("errors", shape=(n,), chunks=(c,), dtype=str, fill_value="")
            if image_size:
                g.create_array("frames", shape=(n, k, frames, image_size, image_size, 3),
                               chunks=(1, k, frames, image_size, image_size, 3), dtype="uint8", fill_value=0)
            for name, values in (("video_ids", lay.video_ids), ("paths", lay.paths),
                                 ("class_names", lay.class_names), ("prompts", lay.prompts)):
                arr = g.create_array(name, shape=(len(values),), chunks=(max(1, len(values)),), dtype=str,
                                     fill_value="")
                if len(values):
                    arr[:] = _strings(values)
            lab = g.create_array("labels", shape=(n,), chunks=(max(1, n),), dtype="int32", fill_value=-1)
            if n:
                lab[:] = np.asarray(lay.labels, dtype=np.int32)
            g.create_array("prompt_embeddings", shape=(len(lay.class_names), dim),
                           chunks=(max(1, len(lay.class_names)), dim), dtype="float32", fill_value=float("nan"))
            integrity.create_digests(g, -(-n // c), integrity.digested_names(bool(image_size)))
        root.attrs["mdmf"] = {"schema_version": SCHEMA_VERSION, "identity": identity, "chunk_videos": chunk_videos,
                              "frames": frames, "dim": dim, **meta}

    def _check_identity(self, identity: dict) -> None:
        stored = self.meta.identity
        for key in sorted(set(stored) | set(identity)):
            if stored.get(key) != identity.get(key):
                raise MdmfError(
                    f"{self.path}: this store was made with {key}={stored.get(key)!r}, the command asks for "
                    f"{key}={identity.get(key)!r}; use --out for a new store, or delete {self.path} to start over"
                )

    # ---- metadata ------------------------------------------------------------------------------------------------
    @property
    def meta(self) -> StoreMeta:
        if self._meta is None:
            self._meta = StoreMeta.from_attrs(self.root.attrs["mdmf"])  # written once at creation, never changed
        return self._meta

    @property
    def splits(self) -> list[str]:
        # Looked up by name: listing the root would trip over summary.json, which is not a Zarr node.
        return [s for s in ("train", "val", "test") if s in self.root]

    def group(self, split: str) -> zarr.Group:
        if split not in self._groups:
            if split not in self.root:
                raise MdmfError(f"{self.path}: the store has no split {split!r} (it has: {', '.join(self.splits)})")
            self._groups[split] = self._node(self.root, split)
        return self._groups[split]

    def array(self, split: str, name: str) -> zarr.Array:
        key = (split, name)
        if key not in self._arrays:
            self._arrays[key] = self._node(self.group(split), name)
        return self._arrays[key]

    def _node(self, parent: zarr.Group, name: str):
        """`parent[name]`, with damaged metadata (a garbage or truncated zarr.json) as one line."""
        try:
            return parent[name]
        except KeyError:
            raise MdmfError(f"{self.path}: {parent.path or 'the store'} has no {name!r} (the store is incomplete); "
                            f"delete {self.path} and extract again") from None
        except Exception as err:
            where = self.path / parent.path / name / "zarr.json"
            raise MdmfError(f"{where}: damaged ({type(err).__name__}); the store's layout cannot be read: restore it "
                            f"from a copy, or delete {self.path} and extract again") from None

    @property
    def chunk_videos(self) -> int:
        return self.meta.chunk_videos

    def num_videos(self, split: str) -> int:
        return int(self.array(split, "status").shape[0])

    def labels(self, split: str) -> np.ndarray:
        """Class ids `(V,)` of the usable videos of `split` (status ok or short), without reading features."""
        status = self.array(split, "status")[:]
        return self.array(split, "labels")[:][(status == OK) | (status == SHORT)].astype(np.int64)

    def views(self, split: str) -> int:
        return int(self.array(split, "features").shape[1])

    # ---- units of work -------------------------------------------------------------------------------------------
    def num_units(self, split: str) -> int:
        return -(-self.num_videos(split) // self.chunk_videos)

    def unit_rows(self, split: str, unit: int) -> range:
        start = unit * self.chunk_videos
        return range(start, min(start + self.chunk_videos, self.num_videos(split)))

    def pending_units(self, split: str, shard: int = 0, num_shards: int = 1,
                      status: np.ndarray | None = None) -> list[int]:
        """Units of `split` owned by shard `shard` of `num_shards` whose status chunk is not written yet (`status`:
        the split's status array if the caller has just read it)."""
        pending_rows = np.flatnonzero((self.status(split) if status is None else status) == PENDING)
        units = np.unique(pending_rows // self.chunk_videos)
        return [int(u) for u in units if u % num_shards == shard]

    def write_unit(self, split: str, unit: int, features: np.ndarray, frame_indices: np.ndarray,
                   status: np.ndarray, errors: list[str], frames: np.ndarray | None = None) -> None:
        """Write one unit (one chunk of videos); its status chunk goes last and marks it done."""
        rows = self.unit_rows(split, unit)
        sl = slice(rows.start, rows.stop)
        if np.any(status == PENDING):
            raise ValueError("every video of a unit must end ok, failed or short")
        written = {"features": features.astype(np.float16), "frame_indices": frame_indices.astype(np.int32),
                   "frames": frames, "errors": _strings(errors), "status": status.astype(np.int8)}
        for name in ("features", "frame_indices", "frames", "errors"):
            if written[name] is not None:
                self.array(split, name)[sl] = written[name]
        if integrity.has_digests(self, split):  # stores made before digests have none
            names = integrity.digested_names("frames" in self.group(split))
            if "frames" in names and frames is None:  # no video of the unit decoded: its rows keep the fill value
                arr = self.array(split, "frames")
                written["frames"] = np.full((len(rows), *arr.shape[1:]), arr.fill_value, dtype=arr.dtype)
            self.array(split, integrity.DIGESTS)[unit:unit + 1] = integrity.unit_digests(written, names)
        self.array(split, "status")[sl] = written["status"]

    def has_prompt_embeddings(self, split: str) -> bool:
        emb = self.group(split)["prompt_embeddings"][:]
        return emb.size == 0 or not np.isnan(emb).any()

    def write_prompt_embeddings(self, split: str, embeddings: np.ndarray) -> None:
        self.group(split)["prompt_embeddings"][:] = embeddings.astype(np.float32)

    # ---- reading -------------------------------------------------------------------------------------------------
    def strings(self, split: str, name: str) -> list[str]:
        return [str(v) for v in self.group(split)[name][:]]

    def status(self, split: str) -> np.ndarray:
        """The status of every video of `split`, read now. Zarr reads it one unit's chunk at a time (0.6 ms each,
        4,189 chunks on SSv2-Full's train split), so the callers that need it several times read it once and hand
        it to `pending_units`, `progress` and `failures` (`statuses`)."""
        return self.array(split, "status")[:]

    def statuses(self) -> dict[str, np.ndarray]:
        """`status` of every split, one read each."""
        return {split: self.status(split) for split in self.splits}

    def load(self, split: str) -> SplitFeatures:
        """The usable videos of `split` (status ok or short) with their features, in memory. Every finished unit is
        checked against its digests first (`features.integrity`): a damaged store is refused, never read as zeros."""
        g = self.group(split)
        integrity.check_layout(self, split)
        arrays, damages = integrity.check_split(self, split, integrity.ON_LOAD)
        if damages:
            raise MdmfError(integrity.damage_message(self, split, damages))
        status = arrays["status"]
        if np.any(status == PENDING):
            raise MdmfError(
                f"{self.path}: split {split} is not fully extracted ({int((status == PENDING).sum())} of "
                f"{len(status)} videos pending); run the same `mdmf extract` command again to finish it"
            )
        if not self.has_prompt_embeddings(split):
            raise MdmfError(f"{self.path}: split {split} has no prompt embeddings yet; run `mdmf extract` again")
        rows = np.flatnonzero((status == OK) | (status == SHORT))
        ids = self.strings(split, "video_ids")
        return SplitFeatures(
            features=_keep_rows(arrays["features"], rows),
            labels=g["labels"][:][rows].astype(np.int64),
            video_ids=[ids[r] for r in rows],
            class_names=self.strings(split, "class_names"),
            prompts=self.strings(split, "prompts"),
            prompt_embeddings=g["prompt_embeddings"][:],
            frame_indices=_keep_rows(arrays["frame_indices"], rows),
            rows=rows,
        )

    def progress(self, statuses: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, int]]:
        """Per split: total videos and how many are pending, ok, failed, short (across all shards; from `statuses`
        when given, else read now)."""
        out = {}
        for split in self.splits:
            status = self.status(split) if statuses is None else statuses[split]
            out[split] = {"total": int(status.size)} | {
                name: int((status == code).sum()) for code, name in STATUS_NAMES.items()
            }
        return out

    def failures(self, split: str, status: np.ndarray | None = None) -> list[tuple[str, str, str]]:
        """(video id, path, reason) of every failed video of `split` (`status`: its status array, if just read)."""
        status = self.status(split) if status is None else status
        rows = np.flatnonzero(status == FAILED)
        if rows.size == 0:
            return []
        g = self.group(split)
        ids, paths, errors = g["video_ids"][:], g["paths"][:], g["errors"][:]
        return [(str(ids[r]), str(paths[r]), str(errors[r])) for r in rows]


def _keep_rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`values[rows]` for sorted `rows`, moved down in place: the integrity check reads each array whole, and a
    copy of the kept rows beside it doubled `load`'s peak; this way the peak is the array itself."""
    for i, r in enumerate(rows.tolist()):
        if i != r:
            values[i] = values[r]
    return values[: len(rows)]


def store_info(store: FeatureStore) -> dict:
    """What `mdmf cache info` shows, as JSON-safe data."""
    meta = store.meta
    statuses = store.statuses()  # one read per split for the counts and the failures
    splits = {}
    for split, counts in store.progress(statuses).items():
        splits[split] = counts | {"classes": len(store.strings(split, "class_names")), "views": store.views(split)}
    return {
        "path": str(store.path),
        "schema_version": meta.schema_version,
        "backbone": meta.backbone,
        "identity": meta.identity,
        "dim": meta.dim,
        "frames": meta.frames,
        "versions": meta.versions,
        "splits": splits,
        "failures": {s: store.failures(s, statuses[s])[:20] for s in store.splits},
    }


def _is_export(path: Path) -> bool:
    """Whether `path` is an HDF5 file written by `export_h5` (so exporting again may replace it)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "mdmf" in f.attrs
    except OSError:  # not HDF5 at all
        return False


def export_h5(store: FeatureStore, out: Path, force: bool = False) -> Path:
    """Copy every array of the store into an HDF5 file (one group per split), attributes as JSON strings.

    Written to `<out>.partial` and renamed: a crash or a full disk never leaves a half-written file under the name,
    and the `.partial` is removed on any error. An existing `out` is replaced only when it is an earlier export (or
    with `force`); a folder never. Missing parent folders are created."""
    import json

    import h5py

    out = local_path(out, "--to")
    check_output_file(out, "--to", force, _is_export)
    tmp = out.with_name(out.name + ".partial")
    target = None
    try:
        # HDF5 writes through a file that keeps a failed write's error for after the close (`DeferredWriteErrors`):
        # a full disk seen by HDF5 itself broke the library and the process segfaulted (exit 139) on closing.
        target = DeferredWriteErrors(tmp)
        with h5py.File(target, "w") as f:
            f.attrs["mdmf"] = json.dumps(store.meta.to_dict())
            for split in store.splits:
                g = f.create_group(split)
                for name, arr in store.group(split).arrays():
                    if target.error is not None:
                        break  # the rest would be thrown away too
                    data = arr[:]
                    if data.dtype.kind in "UTO":
                        g.create_dataset(name, data=np.asarray(data, dtype=object), dtype=h5py.string_dtype())
                    else:
                        g.create_dataset(name, data=data, chunks=True if data.size else None)
        target.close()
        if target.error is not None:
            raise target.error
        tmp.replace(out)  # a crash never leaves a half-written file under the requested name
    except BaseException as err:
        if target is not None:
            target.close()
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise MdmfError(f"--to {out}: no space left on the device; nothing was written (the store is "
                            "unchanged): free space or export elsewhere") from None
        if isinstance(err, OSError):
            raise MdmfError(f"--to {out}: cannot write ({err.strerror or err}); the store is unchanged") from None
        raise
    return out
