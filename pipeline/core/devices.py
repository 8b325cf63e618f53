"""The one device resolver: what `--device` means everywhere (extract, train, eval, predict, report, ablate)."""

from __future__ import annotations

import torch

from mdmf.pipeline.core.errors import MdmfError


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto`: this rank's GPU if there is one, else the CPU; `cuda` alone means this rank's GPU (`local_rank`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MdmfError(f"--device {name}: no CUDA device is visible here; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
