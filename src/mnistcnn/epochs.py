"""One epoch's batches: the learning rate of every step, the data resident on the device, and the chunks of
steps the stepper runs over a shuffled order (or the lecture's DataLoader batches).

Usage: `lrs = [lr_at(cfg, s, total, per_epoch) for s in range(total)]`;
`for losses, correct in resident_epoch(stepper, perm, cfg.batch_size, step, lrs, None, world): ...`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mnistcnn import data
from mnistcnn.config import TrainConfig
from mnistcnn.distributed import World
from mnistcnn.stepper import Stepper, set_lr


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step `step` (0-based): a pure function, so resume needs only the step."""
    if cfg.schedule == "none":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** ((step // steps_per_epoch) // cfg.step_every)
    # onecycle: linear warm-up from lr/25 to lr, then cosine down to lr/25/1e4 (torch's OneCycleLR shape)
    low, final = cfg.lr / 25, cfg.lr / 25 / 1e4
    warm = int(cfg.warmup * total_steps)
    if step < warm:
        return low + (cfg.lr - low) * step / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return final + (cfg.lr - final) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class Resident:
    """A labelled split, normalised, on the device."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, split, device, mean_std: tuple[float, float], channels_last: bool) -> Resident:
        x = data.to_device(split[0], device, *mean_std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return cls(x, split[1].to(device))


def resident_epoch(stepper: Stepper, perm, bs: int, step: int, lrs, lr_table, world: World, begin: int = 0):
    """Yield (losses, correct) per chunk of steps over one epoch of the resident data.

    `bs` is the global batch; under torchrun each rank takes its shard of every global batch.
    """
    n = len(perm)
    full, i = n // bs, begin
    while i < full:
        k = stepper.chunk if i + stepper.chunk <= full else 1
        block = perm[i * bs : (i + k) * bs]
        if world.distributed:
            block = block.view(k, bs).tensor_split(world.size, dim=1)[world.rank].reshape(-1)
        s = step + i - begin
        yield stepper.steps(block, lrs[s : s + k], lr_table[s : s + k] if lr_table is not None else None, s)
        i += k
    if n % bs and i == full:  # the last, smaller batch is trained on, never dropped
        last = world.shard(perm[full * bs :])
        set_lr(stepper.optimizer, lrs[step + full - begin])
        scale = world.size / (n - full * bs) if world.distributed else None
        loss, ok = stepper.train_on(stepper.x[last], stepper.y[last], scale, step + full - begin)
        yield loss[None], ok


def torchvision_epoch(
    stepper: Stepper, root, order, cfg: TrainConfig, lrs, channels_last: bool, begin: int = 0, step: int = 0
):
    """The lecture's DataLoader path: batches arrive as CPU tensors, one step each (`step`: the first's number)."""
    rest = order[begin * cfg.batch_size :]
    for j, (xb, yb) in enumerate(data.torchvision_batches(root, rest, cfg.batch_size, *cfg.normalization())):
        xb, yb = xb.to(stepper.device, non_blocking=True), yb.to(stepper.device, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        set_lr(stepper.optimizer, lrs[j])
        loss, ok = stepper.train_on(xb, yb, step=step + j)
        yield loss[None], ok
