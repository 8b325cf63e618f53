"""Small synthetic feature stores (real Zarr stores on disk, written through `FeatureStore`) for fast tests of the
stages after extraction. Class c's videos share a random frame trajectory plus noise, so few-shot accuracy is above
chance. With `nuisance > 0` the class signal lives in the first `signal_dims` dimensions only and every frame gets
large random values in the others: untrained distances are dominated by that nuisance, and a head that learns to
ignore those dimensions on the train classes transfers to the unseen val/test classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdmf.pipeline.features.store import OK, FeatureStore, SplitLayout
from mdmf.pipeline.train.loop import TrainConfig

CLASSES = {"train": 8, "val": 5, "test": 6}


def make_store(path: Path, per_class: int = 8, frames: int = 8, dim: int = 32, train_views: int = 2,
               noise: float = 1.5, seed: int = 0, nuisance: float = 0.0, signal_dims: int = 8,
               classes: dict[str, int] | None = None, identity: dict | None = None) -> FeatureStore:
    """`classes`: split -> number of classes (default CLASSES; leave a split out to make a store without it).
    `identity`: entries added to (or replacing) the store's identity, e.g. another encoder's weights_sha256."""
    rng = np.random.default_rng(seed)
    layouts, data = {}, {}
    for split, n_classes in (classes or CLASSES).items():
        views = train_views if split == "train" else 1
        labels = np.repeat(np.arange(n_classes), per_class)
        names = [f"{split} class {c}" for c in range(n_classes)]
        centres = rng.normal(size=(n_classes, frames, dim))
        feats = centres[labels][:, None] + noise * rng.normal(size=(len(labels), views, frames, dim))
        if nuisance:
            centres[:, :, signal_dims:] = 0
            feats = centres[labels][:, None] + noise * rng.normal(size=(len(labels), views, frames, dim))
            feats[..., signal_dims:] += nuisance * rng.normal(size=(len(labels), views, frames, dim - signal_dims))
        prompts = centres.mean(1) + 0.5 * rng.normal(size=(n_classes, dim))
        layouts[split] = SplitLayout(video_ids=[f"{split}{i}" for i in range(len(labels))],
                                     paths=[""] * len(labels), labels=labels, class_names=names,
                                     prompts=[f"a photo of {n}" for n in names], views=views)
        data[split] = (feats, prompts)
    store = FeatureStore.create_or_open(path, meta={"backbone": {"backbone": "synthetic"}},
                                        identity={"dataset": "synthetic", "backbone": "synthetic", "seed": seed,
                                                  **(identity or {})},
                                        layouts=layouts, frames=frames, dim=dim, chunk_videos=16)
    for split, (feats, prompts) in data.items():
        for unit in range(store.num_units(split)):
            rows = store.unit_rows(split, unit)
            n = len(rows)
            store.write_unit(split, unit, feats[rows.start : rows.stop], np.zeros((n, feats.shape[1], frames)),
                             np.full(n, OK), [""] * n)
        store.write_prompt_embeddings(split, prompts)
    return store


# A small MDMF head and a short CPU training run on a synthetic store: what the training tests share.
SMALL_HEADS = {"name": "mdmf", "heads": 4, "mlp_dim": 64}


def small_train_config(store: FeatureStore, run_dir, **overrides) -> TrainConfig:
    base = dict(store=str(store.path), run_dir=str(run_dir), model=SMALL_HEADS, steps=6, episodes_per_step=4,
                batch_episodes=2, val_every=3, val_episodes=100, progress=False, device="cpu", lr=1e-3)
    return TrainConfig(**{**base, **overrides})


def tiny_run(store: Path, run_dir: Path, steps: int = 2, **more):
    """A trained run of `small_train_config` on the store at `store` (seconds on a CPU): `RunDir(run_dir)`."""
    from mdmf.pipeline.runs import RunDir
    from mdmf.pipeline.train.loop import train

    train(small_train_config(FeatureStore.open(store), run_dir, steps=steps, val_every=2, val_episodes=10, **more))
    return RunDir(run_dir)
