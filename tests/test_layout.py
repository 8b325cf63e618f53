"""The layout of the package: one import name, every module importable, rooms that import one way, and a wheel that
is the whole product under `mdmf` only."""

import ast
import importlib
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mdmf.pipeline.data.splits import SHIPPED_DATASETS

REPO = Path(__file__).resolve().parents[1]
# The rooms of mdmf.pipeline in the order they may import each other: each imports only those before it (and itself).
ROOMS = ["core", "data", "features", "episodes", "evaluate", "runs", "train", "apps"]
# Where each import name lives in the repository (pyproject's package-dir).
SOURCES = {"mdmf.pipeline": REPO / "pipeline", "mdmf.cli": REPO / "cli", "mdmf": REPO / "mdmf"}


def modules() -> list[str]:
    names = []
    for package in ("mdmf", "mdmf.pipeline", "mdmf.cli"):
        pkg = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")
                  if not m.name.endswith("__main__")]
    return sorted(set(names))


@pytest.mark.parametrize("name", modules())
def test_every_module_imports(name):
    importlib.import_module(name)


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["mdmf", "pipeline"] else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def test_rooms_import_one_way_and_the_model_imports_no_pipeline():
    wrong = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        rel = path.relative_to(REPO / "pipeline").with_suffix("")
        own = rel.parts[0] if len(rel.parts) > 1 else rel.parts[0]
        if own not in ROOMS:
            continue  # pipeline/__init__.py
        for name in _imports(path):
            room = _room(name)
            if room in ROOMS and ROOMS.index(room) > ROOMS.index(own):
                wrong.append(f"{rel} ({own}) imports {name} ({room})")
            if name.startswith("mdmf.cli"):
                wrong.append(f"{rel} imports the CLI: {name}")
    for path in sorted((REPO / "mdmf").glob("*.py")):
        if path.name == "__main__.py":
            continue  # `python -m mdmf` starts the CLI
        wrong += [f"mdmf/{path.name} imports {n}" for n in _imports(path) if n.startswith(("mdmf.pipeline", "mdmf.cli"))]
    assert not wrong, "\n".join(wrong)


def test_the_wheel_is_the_whole_product_under_one_name(built_wheel):
    """`pip wheel .`: only `mdmf` at the top of site-packages, and every module, asset, preset and shipped split file
    of the repo in it."""
    wheel = built_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names} == {"mdmf", wheel.name.split("-py")[0] + ".dist-info"}
    want = set()
    for package, folder in SOURCES.items():
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".py", ".json", ".pt", ".safetensors") and "__pycache__" not in path.parts:
                rel = path.relative_to(folder)
                if package == "mdmf" and rel.parts[0] not in ("__init__.py", "__main__.py") and path.suffix != ".py":
                    continue
                want.add("/".join([*package.split("."), *rel.parts]))
    splits = {"/".join(("mdmf", "splits", *p.relative_to(REPO / "splits").parts))
              for p in (REPO / "splits").rglob("*") if p.is_file()}
    assert len(splits) == 1 + len(SHIPPED_DATASETS) * 7  # README.md, and per benchmark info.json + {train,val,test}{,_classes}.txt
    missing = sorted((want | splits) - names)
    assert not missing, missing[:20]
    assert any(n.startswith("mdmf/pipeline/presets/reference") for n in names)


def test_python_dash_m_mdmf_is_the_cli():
    proc = subprocess.run([sys.executable, "-m", "mdmf", "--help"], capture_output=True, text=True, timeout=120,
                          cwd="/")
    assert proc.returncode == 0 and "extract" in proc.stdout and "train" in proc.stdout

