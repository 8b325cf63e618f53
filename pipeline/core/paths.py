"""Paths a user gives: store locations (local folders, `file://` URLs; other URLs refused), names that must stay
inside their folder, output files that must not replace an unrelated file, and a full disk as one clear line.

Why other URLs are refused rather than passed to an fsspec store: a feature store is created atomically (built in a
hidden sibling folder, then renamed into place) and resumed by reading its chunk files, each replaced atomically;
object stores (`s3://`, `gs://`) have no atomic rename, and a `memory://` store ends with the process. Extract into
a local folder and copy it (e.g. `aws s3 sync`); read it back from a local copy.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlparse

from mdmf.pipeline.core.errors import MdmfError

# `scheme://...`, or what pathlib leaves of it (`Path("s3://b/x")` is `s3:/b/x`): at least two letters, so a Windows
# drive (`C:/`) is not a scheme.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")


def local_path(location: str | os.PathLike, option: str = "--out") -> Path:
    """`location` as a local path: a path as given, or a `file://` URL's path. Any other URL is an `MdmfError`
    (never a local folder named `s3:`)."""
    text = os.fspath(location)
    match = _URL.match(text)
    if not match:
        return Path(text)
    scheme = match.group(1).lower()
    shown = text if text[len(match.group(0)):].startswith("/") else f"{scheme}:/{text[len(match.group(0)) - 1:]}"
    if scheme == "file":
        url = urlparse(text)
        if url.netloc not in ("", "localhost"):
            raise MdmfError(f"{option} {shown}: a file:// URL on another host; mount it and give the local path")
        return Path(unquote(url.path))
    if scheme == "memory":
        raise MdmfError(f"{option} {shown}: memory:// stores are not supported (they would end with this process); "
                        "use a local folder, e.g. a temporary one")
    raise MdmfError(f"{option} {shown}: {scheme}:// locations are not supported (mdmf creates and resumes stores "
                    "in a local folder, by atomic renames); use a local folder, then copy it (e.g. aws s3 sync)")


def escapes(name: str) -> bool:
    """Whether a relative name (a run name, a split entry) would leave the folder it is joined to: absolute, with a
    drive, or with a `..` part (POSIX or Windows separators)."""
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return True
    return False


def run_name_path(runs: str | Path, name: str) -> Path:
    """`runs/<name>` for a run name: one plain folder name, never a path that leaves `runs`."""
    if not name or name in (".", "..") or escapes(name) or "/" in name or "\\" in name:
        raise MdmfError(f"--name {name!r}: a run name is one folder name inside --runs (no '/', '..' or absolute "
                        "path); to write the run elsewhere, use --runs DIR")
    return local_path(runs, "--runs") / name


def check_output_file(path: Path, option: str, force: bool, ours) -> None:
    """Refuse to write the file `path` over something that is not ours: a folder, or (without `force`) an existing
    file for which `ours(path)` is false. Missing parent folders are created."""
    if path.is_dir():
        raise MdmfError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'store.h5'}")
    if path.exists() and not force and not ours(path):
        raise MdmfError(f"{option} {path}: exists and was not written by mdmf; add --force to replace it, or choose "
                        "another name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MdmfError(f"{option} {path}: a part of {parent} is a file, not a folder") from None


def is_disk_full(err: BaseException | None) -> bool:
    """An OSError of a full disk or quota (HDF5 reports it only in its message), also as the cause of `err`."""
    for _ in range(8):  # a short chain; contexts can loop
        if err is None:
            return False
        if isinstance(err, OSError) and (err.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left on device" in str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False
