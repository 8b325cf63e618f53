"""Checkpoints that carry their resolved configs, written atomically.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed over the target:
a crash while saving leaves the previous file intact, never a broken one.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path

import torch

from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.paths import is_disk_full


def save_atomic(obj: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)  # never a half-written file left to fill the disk further
        if isinstance(err, RuntimeError) and is_disk_full(err):
            # torch reports a failed write as "[enforce fail at inline_container.cc]", the ENOSPC as its context
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        raise


def load_checkpoint(path: Path, mmap: bool = False) -> dict:
    """A checkpoint or `visual.pt`, read with `weights_only=True`: tensors and plain containers only, so a shared run
    folder cannot run code on this machine (a pickle of anything else is refused, and nothing of it is executed)."""
    path = Path(path)
    if not path.is_file():
        raise MdmfError(f"{path}: checkpoint not found; train first (`mdmf train`) or check --run")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise MdmfError(f"{path}: refused: it holds Python objects other than tensors and plain containers{what}, "
                        "which could run code when loaded; use checkpoints written by mdmf from a source you "
                        "trust") from None
    except Exception as err:
        what = "it is empty (0 bytes: a write that did not finish)" if path.stat().st_size == 0 else \
            (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise MdmfError(f"{path}: cannot read the checkpoint ({what}); use another checkpoint, or train again "
                        "(`--resume` continues from last.pt)") from None
