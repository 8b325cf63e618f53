"""Datasets by name: the shipped splits of the five standard benchmarks, the generated `toy` set, or a user's own
dataset given by `--splits DIR`."""

from __future__ import annotations

from pathlib import Path

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.splits import load_splits
from mdmf.pipeline.data.splits import splits_dir as shipped_splits_dir
from mdmf.pipeline.data.toy import generate_toy

TOY_DEFAULT_ROOT = Path("data") / "toy"


def default_backbone(dataset: str) -> str:
    """The backbone a dataset's store is extracted with by default: tiny for the toy set, else CLIP RN50."""
    return "tiny" if dataset == "toy" else "RN50"


def stores_folder(dataset: str | None) -> Path:
    """The folder of a dataset's feature stores: `cache/<dataset>` (the one place that says so)."""
    if not dataset:
        raise MdmfError("give --dataset (the store is then found at cache/<dataset>/<backbone>) or --cache PATH")
    return Path("cache") / dataset


def default_store_path(dataset: str | None, backbone: str | None = None) -> Path:
    """Where `mdmf extract` writes a dataset's feature store by default: `cache/<dataset>/<backbone>`. Commands
    that read a store find it with `features.store.find_store` (the dataset's only store), never by this default."""
    return stores_folder(dataset) / (backbone or default_backbone(dataset))


def default_root(dataset: str) -> Path | None:
    """Where a dataset's videos are by default: only the toy set has a default (it is generated there)."""
    return TOY_DEFAULT_ROOT if dataset == "toy" else None


def load_dataset(name: str, root: str | Path | None, splits_dir: str | Path | None = None, progress: bool = True):
    """The `DatasetSplits` of dataset `name` whose videos live under `root`.

    `toy` is generated under `root` on first use (deterministic from its seed) and brings its own split files.
    """
    root = Path(root) if root else default_root(name)
    if root is None:
        raise MdmfError(f"dataset {name}: give the folder that holds its videos with --root DIR")
    if name == "toy":
        generate_toy(root, progress=progress)
        return load_splits(Path(splits_dir) if splits_dir else root / "splits")
    if not root.is_dir():
        raise MdmfError(f"--root {root}: no such folder; point it at the folder that holds the {name} videos")
    return load_splits(shipped_splits_dir(name, splits_dir))
