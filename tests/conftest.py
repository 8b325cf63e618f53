"""Shared fixtures: generated videos, tiny models, toy stores. Each block below is owned by one area; add, don't reorder."""

import os

# The suite is CPU-only by design (CI has no GPU): hide any GPU, for this process and every CLI subprocess it starts,
# so `device="auto"` defaults resolve to the CPU and exact-equality tests run where they were written for.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

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


# ---- packaging: the wheel, built once per session (owner: packaging) -------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def _source_files(repo: Path) -> list[str]:
    """What a fresh clone would hold: git's tracked files plus untracked ones it does not ignore (so a stale build/,
    .venv/ or cache/ can never leak into the wheel); without git, the tree minus the ignored folders."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                             capture_output=True, check=True, timeout=60).stdout.decode()
        return [n for n in out.split("\0") if n and (repo / n).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "dist", "cache", "runs", "data", "__pycache__", ".pytest_cache"}
        return [str(p.relative_to(repo)) for p in repo.rglob("*")
                if p.is_file() and not skip & set(p.relative_to(repo).parts) and ".egg-info" not in str(p)]


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """`pip wheel --no-deps` of a copy of the source tree: the wheel's path. Builds with the installed setuptools when
    it is new enough (offline, ~2 s), else in pip's isolated build env; skipped only when neither can build."""
    import importlib.util
    import shutil
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("wheel")
    src, out = base / "src", base / "dist"
    for name in _source_files(REPO):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", str(out)]
    spec = importlib.util.find_spec("setuptools")
    if spec is not None:
        import setuptools

        if int(setuptools.__version__.split(".")[0]) >= 70:  # bdist_wheel built in: no `wheel` package needed
            command.append("--no-build-isolation")
    proc = subprocess.run(command + [str(src)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "--no-build-isolation" not in command and any(
            s in proc.stderr for s in ("No matching distribution", "Could not find a version", "NewConnectionError")):
        pytest.skip(f"cannot build the wheel here: no setuptools installed and none reachable ({proc.stderr[-300:]})")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("mdmf-*.whl")
    return wheel


# ---- training (test_train_loop, test_train_tracking) ----
@pytest.fixture(scope="session")
def train_store(tmp_path_factory):
    """A synthetic store the training tests train on (read only)."""
    from synthetic import make_store

    return make_store(tmp_path_factory.mktemp("train") / "store", noise=2.5)
