"""Data-parallel training under torchrun: process group, one device per local rank, DDP, batch sharding.

Usage: `torchrun --nproc-per-node 2 -m mnistcnn train ...`. Outside torchrun everything here is a no-op
(`World.single()`): rank 0 of a world of 1.

`--batch-size` is the GLOBAL batch: each optimizer step consumes the same `batch_size` images of the same
seeded permutation as a single process would, split into near-equal contiguous shards, one per rank
(`tensor_split`, so a batch that does not divide by the world size gives some ranks one image more). The
loss is scaled so that DDP's gradient average equals the global batch mean exactly, whatever the shard sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mnistcnn.errors import MnistcnnError


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @classmethod
    def single(cls) -> World:
        return cls()

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch of indices."""
        return batch.tensor_split(self.size)[self.rank] if self.distributed else batch

    def barrier(self) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def any_(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank (a collective: every rank must call it)."""
        if not self.distributed:
            return flag
        nccl = torch.distributed.get_backend() == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        t = torch.tensor([int(flag)], dtype=torch.long, device=device)
        self.all_reduce_(t)
        return t.item() > 0

    def all_reduce_(self, *tensors: torch.Tensor, average: bool = False) -> None:
        if not self.distributed:
            return
        op = torch.distributed.ReduceOp.SUM
        for t in tensors:
            torch.distributed.all_reduce(t, op=op)
            if average:
                t.div_(self.size)


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device_name: str) -> tuple[World, str]:
    """Init the process group when launched by torchrun; return the world and the device for this rank."""
    if not launched_by_torchrun():
        return World.single(), device_name
    import torch.distributed as dist

    try:
        world = World(
            int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"])
        )
    except ValueError:
        raise MnistcnnError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (torchrun sets them)") from None
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_cuda:
        if not torch.cuda.is_available():
            raise MnistcnnError("device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        if world.local_rank >= torch.cuda.device_count():
            raise MnistcnnError(
                f"local rank {world.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "use --nproc-per-node at most the number of GPUs"
            )
        torch.cuda.set_device(world.local_rank)
        device_name = f"cuda:{world.local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    return world, device_name


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def teardown(world: World) -> None:
    if world.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
