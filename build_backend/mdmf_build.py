"""mdmf's build backend: setuptools' own, except that building a wheel leaves no `build/` (nor `*.egg-info`) folder
in the source tree (`pip wheel .` used to), so a later `git status` or a copy of the tree sees only the sources.

setuptools has no setting that moves its build folder out of the tree for every frontend, so the wrapper removes
the folders that the build created, and only those (one that was there before is left as it was).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 - every other hook is setuptools' own


def _made_by_the_build() -> list[Path]:
    return [p for p in (Path("build"), *Path(".").glob("*.egg-info")) if p.exists()]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    before = set(_made_by_the_build())
    try:
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    finally:
        for path in set(_made_by_the_build()) - before:
            shutil.rmtree(path, ignore_errors=True)
