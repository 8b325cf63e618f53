"""The layout of the package: one import name, every module importable, rooms that import one way, and a wheel that
is the whole product under `mdmf` only."""

import ast
import importlib
import pkgutil
import re
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



# Apps that train (the demo trains its head, ablate trains each cell, demo --compare trains every head): the only
# ones that may import train/.
TRAINING_APPS = {"demo", "ablate", "demo_compare"}


def test_evaluation_never_enters_train():
    """Evaluating (evaluate/, and every app that does not itself train: eval, e2e eval, predict, report) imports
    nothing from train/: how a store was made and how to reproduce it lives in features/recipe.py."""
    wrong = []
    for path in sorted((REPO / "pipeline" / "evaluate").glob("*.py")) + sorted((REPO / "pipeline" / "apps").glob("*.py")):
        if path.parent.name == "apps" and path.stem in TRAINING_APPS:
            continue
        wrong += [f"{path.parent.name}/{path.name} imports {n}" for n in _imports(path)
                  if n.startswith("mdmf.pipeline.train")]
    assert not wrong, "\n".join(wrong)


def test_no_function_is_longer_than_80_lines():
    long = []
    for root in ("pipeline", "cli", "mdmf"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > 80:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert not long, "\n".join(long)


def _raw_store_reads(path: Path) -> list[str]:
    """Where a module indexes a store's attributes by string (`x.meta["frames"]`, `x.meta.get(...)`) or reads the
    Zarr attributes (`.attrs`) itself, instead of the fields of `StoreMeta`."""
    found, where = [], path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "meta":
            found.append(f"{where}:{node.lineno} indexes .meta")
        elif (isinstance(node, ast.Attribute) and node.attr in ("get", "keys", "items")
              and isinstance(node.value, ast.Attribute) and node.value.attr == "meta"):
            found.append(f"{where}:{node.lineno} reads .meta.{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "attrs":
            found.append(f"{where}:{node.lineno} reads .attrs")
    return found


def test_only_the_store_reads_its_raw_attributes():
    wrong = []
    for root in ("pipeline", "cli", "mdmf"):
        for path in sorted((REPO / root).rglob("*.py")):
            if path != REPO / "pipeline" / "features" / "store.py":
                wrong += _raw_store_reads(path)
    assert not wrong, "\n".join(wrong)


def test_the_raw_attribute_check_can_fail(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f(store):\n    return store.meta['frames'], store.meta.get('dim'), store.root.attrs\n")
    assert len(_raw_store_reads(sample)) == 3


def test_project_imports_are_sorted():
    """Each module's top-level `from mdmf... import` statements in module order (one block, easy to scan and merge)."""
    wrong = []
    for root in ("pipeline", "cli", "mdmf"):
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text())
            mods = [n.module for n in tree.body
                    if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("mdmf")]
            if mods != sorted(mods):
                wrong.append(f"{path.relative_to(REPO)}: {mods}")
    assert not wrong, "\n".join(wrong)


def test_source_paths_named_in_the_docs_exist():
    """A path like `pipeline/data/decode.py` in the README, docs/, splits/README.md, BENCHMARKS.md or pyproject.toml
    names a file of the repository (a file that moved leaves no stale path behind)."""
    docs = [REPO / "README.md", REPO / "BENCHMARKS.md", REPO / "pyproject.toml", REPO / "splits" / "README.md",
            *sorted((REPO / "docs").glob("*.md"))]
    stale = []
    for doc in docs:
        for path in sorted(set(re.findall(r"\b((?:pipeline|cli|mdmf|tests|benchmarks|scripts)/[\w/]+\.py)\b",
                                          doc.read_text()))):
            if not (REPO / path).is_file():
                stale.append(f"{doc.relative_to(REPO)}: {path}")
    assert not stale, "\n".join(stale)
