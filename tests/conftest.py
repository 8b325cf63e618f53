"""Shared fixtures: generated videos, tiny models, toy stores. Each block below is owned by one area; add, don't reorder."""

# ---- stage one: generated datasets and a micro open_clip model (owner: extraction) ---------------------------------
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

MICRO_CONFIG = Path(__file__).parent / "assets" / "mdmf-micro.json"
SMALL_CLASSES = {"train": ["ApplyEyeMakeup", "brush_hair", "JumpRope"], "val": ["YoYo", "walk"],
                 "test": ["PlayingPiano", "ride_bike"]}


@pytest.fixture(scope="session")
def micro_backbone():
    """A 16-wide open_clip ViT with seeded random weights: plumbing only (its features carry little)."""
    from mdmf.pipeline.features.backbones import load_backbone, resolve_backbone

    return load_backbone(resolve_backbone(str(MICRO_CONFIG), "random"))


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """(root, splits_dir): 7 classes × 3 numbered videos of 24–26 frames in class folders, with split files."""
    from videogen import write_dataset

    base = tmp_path_factory.mktemp("small_dataset")
    write_dataset(base / "videos", base / "splits", SMALL_CLASSES, per_class=3, num_frames=24)
    return base / "videos", base / "splits"


# ---- the built-in toy dataset (owner: toy) ---------------------------------------------------------------------------
TOY_TEST_VIDEOS_PER_CLASS = 6  # enough for a 5-way 5-shot episode with a query


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """(root, config): a small generated toy dataset, 6 videos per class, videos in root/videos, splits in root/splits."""
    from mdmf.pipeline.data.toy import ToyConfig, generate_toy

    config = ToyConfig(videos_per_class=TOY_TEST_VIDEOS_PER_CLASS)
    root = generate_toy(tmp_path_factory.mktemp("toy") / "toy", config, progress=False, workers=1)
    return root, config
