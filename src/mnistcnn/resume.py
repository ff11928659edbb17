"""Interruption and exact resume: the signal flag, where a run stands, and the checkpoint that holds it.

Usage: `cfg, run_dir, ckpt = prepare_resume(Path("runs/x"), overrides)`; `with StopFlag() as stop: ...`.
"""

from __future__ import annotations

import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mnistcnn import checkpoint
from mnistcnn.config import TrainConfig, validate
from mnistcnn.config import from_dict as config_from_dict
from mnistcnn.distributed import World
from mnistcnn.errors import MnistcnnError

ENGINE_KEYS = ("epochs", "device", "precision", "loader", "eval_batch_size", "channels_last", "compile",
               "cuda_graphs", "deterministic", "log_every")  # fmt: skip


def prepare_resume(target: Path, overrides: dict) -> tuple[TrainConfig, Path, dict]:
    """The config, run folder and checkpoint to continue from; flags that would change the recipe are refused."""
    path = Path(target)
    path = path / "last.pt" if path.is_dir() else path
    ckpt = checkpoint.load(path)
    try:
        cfg = config_from_dict(ckpt["config"], source=str(path))
    except MnistcnnError as e:
        raise MnistcnnError(f"{path} holds a config this mnistcnn cannot use ({e})") from None
    given = {k: v for k, v in overrides.items() if v is not None}
    changed = [k for k, v in given.items() if k not in ENGINE_KEYS and getattr(cfg, k) != v]
    if changed:
        was = ", ".join(f"--{k.replace('_', '-')} (was {getattr(cfg, k)!r})" for k in changed)
        raise MnistcnnError(
            f"--resume continues the saved recipe; {was} cannot change. Start a new run instead"
        )
    cfg = validate(config_from_dict({k: v for k, v in given.items() if k in ENGINE_KEYS}, base=cfg))
    done = ckpt["epoch"] + (1 if ckpt.get("batch") else 0)
    if cfg.epochs < done or (cfg.epochs == ckpt["epoch"] and not ckpt.get("batch")):
        raise MnistcnnError(
            f"{path.parent} has already trained {ckpt['epoch']} of {cfg.epochs} epochs; "
            f"pass --epochs N with N > {ckpt['epoch']} to train further"
        )
    return cfg, path.parent, ckpt


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second signal while saving is ignored
    (the checkpoint is written to a temporary file and moved into place, so even a kill leaves a whole one)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def should_stop(stop: StopFlag, world: World, calls: int) -> bool:
    """Single process: the signal flag. Data-parallel: every rank must stop at the same step, so the ranks
    agree (one tiny all-reduce, one host read) every 16 chunks."""
    if not world.distributed:
        return stop.signum is not None
    if calls % 16:
        return False
    agreed = world.any_(stop.signum is not None)
    if agreed and stop.signum is None:
        stop.signum = signal.SIGTERM
    return agreed


@dataclass
class Position:
    """Where a run stands: epochs done, batches done in the current epoch, and what was measured so far."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best: float = -1.0
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    correct: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, ckpt: dict | None) -> Position:
        if ckpt is None:
            return cls()
        partial = ckpt.get("partial") or {}
        history = [r for r in ckpt.get("metrics", []) if r.get("type") == "epoch"]
        return cls(ckpt["epoch"], ckpt.get("batch", 0), ckpt["step"], ckpt.get("best", -1.0), history,
                   partial.get("losses", []), partial.get("correct", 0), partial.get("seconds", 0.0))  # fmt: skip


def checkpoint_state(model, optimizer, cfg, epoch, batch, step, history, best, partial=None) -> dict:
    """Everything needed to continue exactly: `epoch` epochs done plus `batch` batches of the next one."""
    opt_state = optimizer.state_dict()
    for group in opt_state["param_groups"]:  # a tensor LR (CUDA graphs) is stored as a plain float
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = group["lr"].item()
    rng = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt_state,
        "scheduler": {"name": cfg.schedule, "step": step},
        "config": cfg.to_dict(),
        "epoch": epoch,
        "batch": batch,
        "step": step,
        "best": best,
        "partial": partial or {},
        "metrics": list(history),
        "rng": rng,
    }


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state, keeping a tensor LR a tensor (CUDA graphs read it in place)."""
    lrs = [g["lr"] for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as e:
        raise MnistcnnError(
            f"the checkpoint's optimizer state does not fit this run ({e}); start a new run"
        ) from None
    for group, lr in zip(optimizer.param_groups, lrs):
        if isinstance(lr, torch.Tensor):
            lr.fill_(float(group["lr"]))
            group["lr"] = lr
