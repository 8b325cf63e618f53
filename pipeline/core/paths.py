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
from contextlib import contextmanager
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
    check_writable(parent, option, shown=path)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MdmfError(f"{option} {path}: a part of {parent} is a file, not a folder") from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system, a loop: nothing is there to write over
        return False


def check_writable(path: str | os.PathLike, option: str, shown: str | os.PathLike | None = None) -> None:
    """Refuse, before any work and without creating anything, an output folder that cannot be made or written:
    a file where a folder should be, a read-only file system, no permission, a name too long. `shown`: the path
    the message names (default `path`), e.g. the file to be written in the folder `path`."""
    path = Path(path)
    shown = shown or path
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    probe = path
    while not _exists(probe) and probe.parent != probe:
        probe = probe.parent  # the nearest folder that exists: the one written into
    if _exists(probe) and not probe.is_dir():
        raise MdmfError(f"{option} {shown}: {probe} is a file, not a folder; give a folder (or another name)")
    limit = os.pathconf(probe, "PC_NAME_MAX") if hasattr(os, "pathconf") and _exists(probe) else 255
    if longest > limit:
        raise MdmfError(f"{option} {shown}: a name of {longest} bytes, longer than this file system allows ({limit}); "
                        "give a shorter one")
    if _exists(probe) and not os.access(probe, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(probe).f_flag & os.ST_RDONLY
        why = "a read-only file system" if read_only else "no permission to write there"
        raise MdmfError(f"{option} {shown}: cannot write into {probe} ({why}); give a folder you can write to")


_PROBLEMS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
             errno.EROFS: "a read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.ENAMETOOLONG: "a file name too long for the file system",
             errno.ENOTDIR: "a part of the path is a file, not a folder",
             errno.EEXIST: "a file is where a folder should be"}


def file_system_problem(err: BaseException | None) -> str | None:
    """What the file system refused, in words (also as the cause of `err`), or None for another error."""
    if is_disk_full(err):
        return _PROBLEMS[errno.ENOSPC]
    for _ in range(8):
        if err is None:
            return None
        if isinstance(err, OSError) and err.errno in _PROBLEMS:
            return _PROBLEMS[err.errno]
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def file_system_errors(target: str | os.PathLike, kept):
    """An OSError of the file system while writing `target` as one line: what was refused, then `kept` (what was
    kept and how to go on; a callable is asked then). Other errors pass."""
    try:
        yield
    except OSError as err:
        problem = file_system_problem(err)
        if problem is None:
            raise
        raise MdmfError(f"{target}: {problem} ({err.filename or err.strerror or err}); "
                        f"{kept() if callable(kept) else kept}") from None


def write_text_atomic(path: Path, text: str) -> None:
    """`path.write_text(text)` through a hidden temporary file renamed into place: a full disk never leaves a
    half-written file (the temporary one is removed, an earlier file under the name is kept)."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class DeferredWriteErrors:
    """A binary file for a native writer that cannot survive a failed write (HDF5: a write that fails while its
    metadata cache is flushed, as a full disk does, leaves the library broken, and the process segfaults when h5py
    closes the file or exits). The first OSError of a write is kept in `error` and the write is reported as done,
    so the writer finishes and closes cleanly; the caller then checks `error` and throws the file away."""

    def __init__(self, path: Path):
        self._f = open(path, "w+b", buffering=0)  # unbuffered: a write fails where it is made, not at a later flush
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            start = self._f.tell()
            try:
                done = 0
                while done < len(view):
                    done += self._f.write(view[done:])
                return len(view)
            except OSError as err:
                self.error = err
                self._f.seek(start)
        self._f.seek(len(view), os.SEEK_CUR)  # the position the writer expects; no space is needed for it
        return len(view)

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: int | None = None) -> int:
        try:
            return self._f.truncate(size)
        except OSError as err:
            self.error = self.error or err
            return self._f.tell() if size is None else size

    def flush(self) -> None:
        pass  # unbuffered

    def close(self) -> None:
        self._f.close()


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
