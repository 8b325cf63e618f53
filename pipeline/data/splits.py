"""Few-shot split files: reading them, finding their videos on disk, and turning class names into prompts.

A splits folder (format in docs/CONTRACTS.md and splits/README.md) holds, per split `s` in train/val/test:
`s.txt` (`<class name>\\t<video id>` per line), `s_classes.txt` (class names; line k = class id k) and one
`info.json`. The five standard benchmarks ship under the repository's `splits/<dataset>/`; the toy generator writes
its own under `<root>/splits`; users write one for their own data and pass `--splits DIR`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.paths import escapes

SPLITS = ("train", "val", "test")
SHIPPED_DATASETS = ("hmdb51", "ucf101", "kinetics100", "ssv2_small", "ssv2_full")
# `toy` has no shipped splits: the toy generator writes them under `<root>/splits`.
KNOWN_DATASETS = SHIPPED_DATASETS + ("toy",)
# What the exact reader (PyAV, i.e. FFmpeg) opens; the first four were the only ones before, and stay first.
DEFAULT_EXTENSIONS = ("avi", "mp4", "webm", "mkv", "mov", "m4v", "mpg", "mpeg")
# auto (no info.json): each video is looked for in class folders, then directly under the root.
LAYOUTS = ("class_folders", "flat", "auto")
NO_FLIP_DATASETS = ("ssv2_small", "ssv2_full")  # left/right is part of SSv2's labels: the only shipped no-flip ones
# The shipped splits: the repository's top-level splits/ in a source checkout or editable install, the package data
# `mdmf/splits/` in a wheel (pyproject maps splits/ to mdmf.splits). This file is <repo>/pipeline/data/splits.py in the
# one and <site-packages>/mdmf/pipeline/data/splits.py in the other, so both are parents[2] / "splits" (tested for the
# checkout in tests/test_data_splits.py and for an installed wheel in tests/test_packaging.py).
SHIPPED_SPLITS_ROOT = Path(__file__).resolve().parents[2] / "splits"


@dataclass(frozen=True)
class SplitEntry:
    """One listed video: its class folder name, its file stem, and its class id within its split."""

    class_name: str
    video_id: str
    label: int


@dataclass(frozen=True)
class DatasetInfo:
    """The contents of `info.json`: how videos are laid out on disk and whether flip augmentation is allowed."""

    name: str
    layout: str  # "class_folders" (<root>/<class>/<id>.<ext>), "flat" (<root>/<id>.<ext>) or "auto" (either)
    flip: bool
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS  # tried in this order
    source: str = ""
    written: bool = True  # False: there was no info.json and these are the defaults (`defaults_note` says so)

    def defaults_note(self, directory: Path) -> str | None:
        """The one line that says a splits folder without info.json got the defaults, and how to change them."""
        if self.written:
            return None
        return (f"{directory}: no info.json (or one without layout and flip): videos are looked for in class folders, else directly under "
                f"--root, with the extensions {', '.join(self.extensions)}; flip augmentation is on, as for every "
                'shipped dataset but SSv2 (write info.json with {"flip": false} when left/right is part of the '
                "labels)")


@dataclass
class DatasetSplits:
    """A loaded splits folder: per split, its entries (file order) and its class names (class id order)."""

    path: Path
    info: DatasetInfo
    entries: dict[str, list[SplitEntry]] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name


# ---- locating and loading splits folders ------------------------------------------------------------------------


def splits_dir(dataset: str, override: str | Path | None = None, root: str | Path | None = None) -> Path:
    """The splits folder to use for `dataset`.

    `override` (the CLI's `--splits DIR`) always wins, for any dataset name (that is how users bring their own data).
    `toy`: its splits are written by the toy generator under `<root>/splits`, so give `root` (or `override`).
    The five shipped benchmarks default to the repository's `splits/<dataset>`. Raises `MdmfError` otherwise.
    """
    if override is not None:
        path = Path(override)
        if not path.is_dir():
            raise MdmfError(f"--splits {path}: no such folder (it should hold train.txt, train_classes.txt, ..., info.json)")
        return path
    if dataset == "toy":
        if root is None:
            raise MdmfError("dataset toy: its splits are written under <root>/splits by the toy generator; give --root DIR")
        return Path(root) / "splits"
    if dataset not in SHIPPED_DATASETS:
        raise MdmfError(f"unknown dataset {dataset!r}: known are {', '.join(KNOWN_DATASETS)}; "
                        "for your own data give its split files with --splits DIR (format: splits/README.md)")
    path = SHIPPED_SPLITS_ROOT / dataset
    if not path.is_dir():
        raise MdmfError(f"the shipped splits of {dataset} are not at {path} (an mdmf install without its package data "
                        "mdmf/splits? reinstall it); "
                        "give them with --splits DIR")
    return path


def load_splits(directory: str | Path) -> DatasetSplits:
    """Read and validate a splits folder; the splits present (any of train/val/test, at least one) are loaded.

    Every problem is an `MdmfError` naming the file (and line): a line without exactly one TAB, an empty field, a class
    missing from `<split>_classes.txt`, a duplicated video id or class name, a class with no videos, a `<split>.txt`
    without its `<split>_classes.txt` (or the reverse), a missing or invalid `info.json`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MdmfError(f"splits folder {directory} does not exist")
    info = _read_info(directory / "info.json")
    out = DatasetSplits(path=directory, info=info)
    for split in SPLITS:
        videos, names = directory / f"{split}.txt", directory / f"{split}_classes.txt"
        if not videos.exists() and not names.exists():
            continue
        for have, lack in ((videos, names), (names, videos)):
            if have.exists() and not lack.exists():
                raise MdmfError(f"{have} exists but {lack} is missing: every split needs both files")
        out.classes[split] = _read_classes(names)
        out.entries[split] = _read_entries(videos, out.classes[split], names)
    if not out.entries:
        raise MdmfError(f"{directory}: no split files found (expected train.txt + train_classes.txt, and val/test alike)")
    return out


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number from 1, text) of the lines that are not empty or `#` comments."""
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first line; CRLF line ends
        # are read as line ends by the text mode's universal newlines
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise MdmfError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise MdmfError(f"{path}: cannot read ({err.strerror})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip("\r\n")
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append((number, line))
    return lines


def _read_classes(path: Path) -> list[str]:
    names: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in _read_lines(path):
        name = line.strip()
        if "\t" in name:
            raise MdmfError(f"{path}:{number}: a class-names file holds one name per line, without TABs")
        if name in first_line:
            raise MdmfError(f"{path}:{number}: class {name!r} is listed twice (first on line {first_line[name]})")
        first_line[name] = number
        names.append(name)
    if not names:
        raise MdmfError(f"{path}: no class names in it")
    return names


def _read_entries(path: Path, classes: list[str], classes_path: Path) -> list[SplitEntry]:
    label_of = {name: i for i, name in enumerate(classes)}
    entries: list[SplitEntry] = []
    first_line: dict[str, int] = {}
    for number, line in _read_lines(path):
        fields = line.split("\t")
        if len(fields) != 2:
            raise MdmfError(f"{path}:{number}: expected '<class name><TAB><video id>', got {len(fields)} "
                            f"TAB-separated field(s): {line[:80]!r}")
        class_name, video_id = fields[0].strip(), fields[1].strip()
        if not class_name or not video_id:
            raise MdmfError(f"{path}:{number}: empty class name or video id: {line[:80]!r}")
        for what, value in (("video id", video_id), ("class name", class_name)):
            if escapes(value):  # the file would be looked up outside --root
                raise MdmfError(f"{path}:{number}: {what} {value!r} is an absolute path or climbs with '..'; "
                                "entries name files inside --root (<class>/<id>.<ext>)")
        if class_name not in label_of:
            raise MdmfError(f"{path}:{number}: class {class_name!r} is not in {classes_path.name}")
        if video_id in first_line:
            raise MdmfError(f"{path}:{number}: video {video_id!r} is listed twice (first on line {first_line[video_id]})")
        first_line[video_id] = number
        entries.append(SplitEntry(class_name, video_id, label_of[class_name]))
    if not entries:
        raise MdmfError(f"{path}: no videos in it")
    unused = sorted(set(classes) - {e.class_name for e in entries})
    if unused:
        raise MdmfError(f"{classes_path}: {len(unused)} class(es) have no video in {path.name}, e.g. {unused[0]!r}")
    return entries


def _read_info(path: Path) -> DatasetInfo:
    if not path.exists():  # a dataset in one step: the defaults, said once by the command (`defaults_note`)
        return DatasetInfo(name=path.parent.name, layout="auto", flip=True, written=False)
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is not JSON
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MdmfError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise MdmfError(f"{path}: expected a JSON object")
    layout, flip = raw.get("layout", "auto"), raw.get("flip", True)
    if layout not in LAYOUTS:
        raise MdmfError(f"{path}: \"layout\" must be one of {', '.join(LAYOUTS)} (got {layout!r})")
    if not isinstance(flip, bool):
        raise MdmfError(f"{path}: \"flip\" must be true or false (false when left/right is part of the labels)")
    extensions = raw.get("extensions", list(DEFAULT_EXTENSIONS))
    if not isinstance(extensions, list) or not extensions or not all(isinstance(e, str) and e for e in extensions):
        raise MdmfError(f"{path}: \"extensions\" must be a non-empty list of strings such as [\"mp4\", \"avi\"]")
    return DatasetInfo(name=str(raw.get("name") or path.parent.name), layout=layout, flip=flip,
                       extensions=tuple(e.lstrip(".") for e in extensions), source=str(raw.get("source", "")),
                       written="layout" in raw and "flip" in raw)


# ---- finding videos on disk -------------------------------------------------------------------------------------


def class_dir_names(class_name: str) -> list[str]:
    """Folder names tried for a class: as written, then with spaces as underscores (`air drumming` → `air_drumming`)."""
    names = [class_name]
    if " " in class_name:
        names.append(class_name.replace(" ", "_"))
    return names


def _subfolders(root: Path) -> tuple[str, ...]:
    """Immediate sub-folders of a video root (listed again only when the root's modification time changes)."""
    try:
        return _list_subfolders(str(root), root.stat().st_mtime_ns)
    except OSError:
        return ()


@lru_cache(maxsize=64)
def _list_subfolders(root: str, mtime_ns: int) -> tuple[str, ...]:
    try:
        return tuple(sorted(e.name for e in os.scandir(root) if e.is_dir()))
    except OSError:
        return ()


def resolve_video(root: str | Path, entry: SplitEntry, info: DatasetInfo) -> Path | None:
    """The file of `entry` under `root`, or None when there is none.

    `flat`: `<root>/<id>.<ext>`. `class_folders`: `<root>/<class>/<id>.<ext>` with the class name as written or with
    spaces as underscores; when no such class folder exists directly under `root`, one level of sub-folder is searched
    too (`<root>/train/<class>/...`, `<root>/train_256/<class>/...`). Extensions are tried in `info.extensions` order.
    """
    root = Path(root)
    if info.layout == "flat":
        folders = [root]
    elif info.layout == "auto":  # no info.json: the class folder first, then flat
        found = resolve_video(root, entry, replace(info, layout="class_folders"))
        return found or resolve_video(root, entry, replace(info, layout="flat"))
    else:
        folders = [root / name for name in class_dir_names(entry.class_name) if (root / name).is_dir()]
        if not folders:  # split sub-folders: only looked into when the class folder is not directly under root
            folders = [root / sub / name for sub in _subfolders(root)
                       for name in class_dir_names(entry.class_name) if (root / sub / name).is_dir()]
    for folder in folders:
        for ext in info.extensions:
            path = folder / f"{entry.video_id}.{ext}"
            if _is_file(path):
                return path
    return None


def _is_file(path: Path) -> bool:
    """`path.is_file()`, False for a name the file system cannot hold (a 300-character video id: ENAMETOOLONG)."""
    try:
        return path.is_file()
    except OSError:
        return False


def expected_location(root: str | Path, entry: SplitEntry, info: DatasetInfo) -> str:
    """Where `resolve_video` looks first, for messages about missing videos: `<root>/<class>/<id>.{avi,mp4}`."""
    folder = Path(root) if info.layout == "flat" else Path(root) / entry.class_name
    exts = info.extensions[0] if len(info.extensions) == 1 else "{" + ",".join(info.extensions) + "}"
    return f"{folder / entry.video_id}.{exts}"


# ---- class names as text --------------------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def readable_class_name(name: str) -> str:
    """The class name as plain lower-case words, for the text prompt.

    Underscores become spaces, CamelCase is split, SSv2's `[something]` brackets are dropped, everything is
    lower-cased (SSv2 sentences too: only their first letter changes): `ApplyEyeMakeup` → `apply eye makeup`,
    `brush_hair` → `brush hair`, `YoYo` → `yo yo`, `Pouring [something] into [something]` →
    `pouring something into something`, `air drumming` unchanged.
    """
    text = name.replace("[", "").replace("]", "").replace("_", " ")
    text = _CAMEL.sub(" ", text)
    return " ".join(text.split()).lower()


def prompt_for(name: str, template: str = "a photo of {}") -> str:
    """The prompt text of a class: `template` with `{}` replaced by `readable_class_name(name)`."""
    if "{}" not in template:
        raise MdmfError(f"prompt template {template!r} has no {{}} where the class name goes, e.g. 'a photo of {{}}'")
    try:
        return template.format(readable_class_name(name))
    except (IndexError, KeyError, ValueError) as err:
        raise MdmfError(f"prompt template {template!r}: use exactly one {{}} and no other braces ({err})") from None
