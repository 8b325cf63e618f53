"""`mdmf splits`: a splits folder written from a folder of class folders, so that a dataset goes in in one step.

    <root>/<class>/<video>.<ext>   ->   <out>/train.txt, train_classes.txt, val..., test..., info.json

Few-shot splits divide the classes, not the videos: each class goes whole to train, val or test (the benchmarks'
convention, e.g. HMDB51's 31 / 10 / 10 classes). `--val` and `--test` are a count of classes (`3`) or a fraction
(`0.2`) of them; the classes are shuffled by `--seed` first, so the same tree and seed always give the same files.
The files are the ones `load_splits` (and so `check-data`, `extract`) reads: `<class>\\t<video stem>` lines in
sorted order, the class names in the order of their ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.splits import DEFAULT_EXTENSIONS, SPLITS


@dataclass(frozen=True)
class SplitSizes:
    """Classes per split for `classes` classes in all."""

    train: int
    val: int
    test: int


def class_count(text: str, total: int, option: str) -> int:
    """`--val 3` (a count) or `--val 0.2` (a fraction of `total`, rounded) as a number of classes."""
    try:
        value = float(text)
    except ValueError:
        raise MdmfError(f"{option} {text}: give a number of classes (3) or a fraction of them (0.2)") from None
    if value < 0 or (value != int(value) and value >= 1):
        raise MdmfError(f"{option} {text}: give a number of classes (3) or a fraction below 1 (0.2)")
    if value < 1 and "." in text:
        return int(round(value * total))
    return int(value)


def split_sizes(total: int, val: str, test: str) -> SplitSizes:
    """The classes of each split; every split written needs 2 classes (the smallest episode), train the rest."""
    n_val, n_test = class_count(val, total, "--val"), class_count(test, total, "--test")
    n_train = total - n_val - n_test
    for name, n in (("--val", n_val), ("--test", n_test)):
        if n == 1:
            raise MdmfError(f"{name} gives 1 class: a split needs 2 classes or more for an episode (or 0: none)")
    if n_train < 2:
        raise MdmfError(f"{total} classes: {n_val} val + {n_test} test leave {n_train} for train, which needs 2 or "
                        "more; lower --val/--test")
    return SplitSizes(n_train, n_val, n_test)


def class_videos(root: Path, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> dict[str, list[str]]:
    """Class folder name -> its videos' stems (sorted), for the class folders of `root` that hold videos."""
    root = Path(root)
    if not root.is_dir():
        raise MdmfError(f"--root {root}: no such folder; give the folder that holds one folder per class")
    out: dict[str, list[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        stems: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lstrip(".").lower() in extensions:
                if f.stem in stems:
                    raise MdmfError(f"{f} and {stems[f.stem].name}: two videos with the name {f.stem!r} in one "
                                    "class; a video id is the file name without its extension, rename one")
                stems[f.stem] = f
        if stems:
            out[folder.name] = sorted(stems)
    if len(out) < 2:
        raise MdmfError(f"--root {root}: {len(out)} class folder(s) with videos ({', '.join(extensions)}); "
                        "a few-shot dataset needs one folder per class, several classes")
    return out


def make_splits(root: Path, out: Path, val: str = "0.2", test: str = "0.2", seed: int = 0,
                flip: bool = True, force: bool = False) -> dict[str, list[str]]:
    """Write the splits folder `out` for the class folders under `root`; returns split -> its class names.

    An `out` that already holds split files is replaced only with `force` (they may be hand-made)."""
    out = Path(out)
    written = [out / f"{s}{suffix}" for s in SPLITS for suffix in (".txt", "_classes.txt")] + [out / "info.json"]
    if not force and any(p.exists() for p in written):
        raise MdmfError(f"--out {out}: already holds split files; add --force to replace them, or choose another")
    videos = class_videos(root)
    sizes = split_sizes(len(videos), val, test)
    order = np.random.default_rng(seed).permutation(sorted(videos))
    chosen = {"train": sorted(order[: sizes.train]), "val": sorted(order[sizes.train: sizes.train + sizes.val]),
              "test": sorted(order[sizes.train + sizes.val:])}
    out.mkdir(parents=True, exist_ok=True)
    for p in written:
        p.unlink(missing_ok=True)  # with --force: a split that is now empty must not be left from before
    extensions = sorted({f.suffix.lstrip(".").lower() for c in videos for f in (Path(root) / c).iterdir()
                         if f.suffix.lstrip(".").lower() in DEFAULT_EXTENSIONS})
    for split, classes in chosen.items():
        if not classes:
            continue
        (out / f"{split}_classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
        (out / f"{split}.txt").write_text("".join(f"{c}\t{v}\n" for c in classes for v in videos[c]),
                                          encoding="utf-8")
    info = {"name": Path(root).resolve().name, "layout": "class_folders", "flip": flip, "extensions": extensions,
            "source": f"mdmf splits --root {root} --val {val} --test {test} --seed {seed}"}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {split: [str(c) for c in classes] for split, classes in chosen.items() if classes}
