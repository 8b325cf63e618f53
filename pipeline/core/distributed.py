"""Multi-process training through `torchrun` (DistributedDataParallel): one process per GPU, on one or many nodes.

`torchrun` sets `WORLD_SIZE`, `RANK` and `LOCAL_RANK`; without them the run is one process and nothing here does
anything. Each rank runs its own episodes of every optimizer step, DDP averages the gradients, and only rank 0
writes files. Backend: NCCL on CUDA, gloo on CPU (so the same command runs, and is tested, without a GPU).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mdmf.pipeline.core.devices import resolve_device
from mdmf.pipeline.core.errors import MdmfError


@dataclass
class DistContext:
    """Where this process stands: rank `rank` of `world` processes, computing on `device`."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process initialised the process group (and so tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over all ranks (every rank gets the result)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` in DistributedDataParallel when there are several processes.

        Buffers are not broadcast: frozen batch-norm statistics are equal on all ranks anyway, and the heads' running
        statistics that rank 0 saves are those of rank 0's episodes either way.
        """
        if not self.distributed:
            return module
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # newer torch renamed the switch (and still syncs once at init, which is what we want)
        name = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters \
            else "broadcast_buffers"
        return DistributedDataParallel(module, device_ids=ids, **{name: False})

    def no_sync(self, module: torch.nn.Module, skip: bool):
        """Inside: backward passes accumulate gradients locally (all but the last chunk of an optimizer step)."""
        return module.no_sync() if skip and self.distributed else nullcontext()


def env_world() -> int:
    """The number of processes `torchrun` started (WORLD_SIZE; 1 without it)."""
    text = os.environ.get("WORLD_SIZE", "").strip() or "1"
    try:
        return int(text)
    except ValueError:
        raise MdmfError(f"WORLD_SIZE={text!r} is not a number of processes; start under torchrun, or unset it") from None


def setup(device: str = "auto") -> DistContext:
    """The context of this process; initialises the process group under `torchrun` (env://)."""
    world = env_world()
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank=rank, world=world, local_rank=local, device=dev, owns_group=owns)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
