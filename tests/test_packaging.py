"""The wheel is the whole product: built from the source tree, installed into a fresh venv (the already-installed
dependencies are reused through a .pth file, nothing is downloaded), and used from outside the repository: the
version, `check-data` on a shipped benchmark's split files, and a toy extraction with the shipped tiny backbone."""

import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videogen import write_video

REPO = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)  # [project]


@pytest.fixture(scope="module")
def venv(built_wheel, tmp_path_factory):
    """A fresh venv holding only the wheel; its dependencies come from this interpreter's site-packages (.pth)."""
    env_dir = tmp_path_factory.mktemp("venv") / "v"
    from importlib.metadata import version

    # pip >= 22.3 installs into another interpreter (--python); an older one needs the venv's own pip
    own_pip = tuple(int(v) for v in version("pip").split(".")[:2]) < (22, 3)
    subprocess.run([sys.executable, "-m", "venv", *([] if own_pip else ["--without-pip"]), str(env_dir)],
                   check=True, timeout=300)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # Only the directories themselves go on sys.path: their own .pth files (the editable install's finder) are not
    # processed, so `mdmf` can only come from the wheel.
    deps = [p for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()]
    (purelib / "_mdmf_test_deps.pth").write_text("\n".join(deps) + "\n")
    pip_command = [str(python), "-m", "pip"] if own_pip else [sys.executable, "-m", "pip", "--python", str(python)]
    proc = subprocess.run(pip_command + ["install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check",
                                         str(built_wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir, purelib


def run_in(venv_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", COLUMNS="200")
    return subprocess.run([str(venv_dir / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_installed_mdmf_is_the_wheel_and_knows_its_version(venv, tmp_path):
    env_dir, purelib = venv
    where = run_in(env_dir, tmp_path, "python", "-c", "import mdmf, mdmf.pipeline.data.splits as s; "
                   "print(mdmf.__file__); print(mdmf.__version__); print(s.SHIPPED_SPLITS_ROOT)")
    assert where.returncode == 0, where.stderr
    file, version, splits_root = where.stdout.split("\n")[:3]
    assert Path(file).is_relative_to(purelib) and version == VERSION
    assert Path(splits_root) == purelib / "mdmf" / "splits"
    for command in (("mdmf", "--version"), ("python", "-m", "mdmf", "--version")):
        proc = run_in(env_dir, tmp_path, *command)
        assert proc.returncode == 0 and proc.stdout.strip() == f"mdmf {VERSION}", proc.stderr


def test_check_data_on_a_shipped_split_from_outside_the_repo(venv, tmp_path):
    """Two of UCF101's test videos on disk: the installed splits are found and every listed video is accounted for."""
    env_dir, purelib = venv
    listed = [line.split("\t") for line in (REPO / "splits" / "ucf101" / "test.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    root = tmp_path / "UCF101"
    for name, video_id in listed[:2]:
        write_video(root / name / f"{video_id}.avi", 12)
    report = tmp_path / "report.json"
    proc = run_in(env_dir, tmp_path, "mdmf", "check-data", "--dataset", "ucf101", "--root", str(root), "--split",
                  "test", "--workers", "1", "--quiet", "--json", str(report))
    assert proc.returncode == 1, proc.stderr  # missing videos: exit 1, not a crash (2) or success (0)
    data = json.loads(report.read_text())
    assert Path(data["splits_dir"]) == purelib / "mdmf" / "splits" / "ucf101"
    test = data["splits"]["test"]
    assert (test["listed"], test["found"], test["readable"], test["missing"]) == (len(listed), 2, 2, len(listed) - 2)
    assert test["frames_min"] == 12 and "test" in proc.stdout and "missing" in proc.stdout


def test_a_toy_extraction_from_the_wheel_equals_the_checkouts(venv, tmp_path):
    from mdmf.pipeline.data.toy import ToyConfig, generate_toy
    from mdmf.pipeline.data.views import OK
    from mdmf.pipeline.features.extract import run_extract
    from mdmf.pipeline.features.recipe import ExtractConfig
    from mdmf.pipeline.features.store import FeatureStore

    env_dir, purelib = venv
    root = generate_toy(tmp_path / "toy", ToyConfig(videos_per_class=1), progress=False, workers=1)
    proc = run_in(env_dir, tmp_path, "mdmf", "extract", "--dataset", "toy", "--root", "toy", "--out", "store",
                  "--split", "test", "--workers", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    run_extract(ExtractConfig(dataset="toy", root=str(root), out=str(tmp_path / "checkout"), splits=("test",),
                              workers=0, progress=False))
    wheel, checkout = FeatureStore.open(tmp_path / "store"), FeatureStore.open(tmp_path / "checkout")
    ours, theirs = wheel.meta["backbone"], checkout.meta["backbone"]
    assert Path(ours["weights"]).is_relative_to(purelib / "mdmf" / "pipeline" / "assets")  # the wheel's tiny model
    assert ours["weights_sha256"] == theirs["weights_sha256"] and ours["backbone"] == theirs["backbone"] == "tiny"
    for split in ("test",):
        lines = (root / "splits" / f"{split}.txt").read_text().split()
        status = wheel.group(split)["status"][:]
        assert len(status) == len(lines) // 2 and (status == OK).all()  # every listed video, each extracted
        np.testing.assert_array_equal(wheel.group(split)["frame_indices"][:], checkout.group(split)["frame_indices"][:])
        np.testing.assert_allclose(np.asarray(wheel.group(split)["features"][:], dtype=np.float32),
                                   np.asarray(checkout.group(split)["features"][:], dtype=np.float32), atol=2e-3)
        np.testing.assert_array_equal(status, checkout.group(split)["status"][:])


def test_pip_wheel_leaves_no_build_folder_in_the_source_tree(built_wheel):
    """`pip wheel .` built in the copy of the tree (built_wheel's `src`) and left it as it was: no build/, no
    egg-info (build_backend/mdmf_build.py), and the backend itself is not in the wheel."""
    import zipfile

    src = built_wheel.parents[1] / "src"
    assert src.is_dir() and not (src / "build").exists() and not list(src.glob("*.egg-info"))
    assert not any("mdmf_build" in n for n in zipfile.ZipFile(built_wheel).namelist())
