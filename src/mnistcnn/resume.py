"""Whether and how a run continues: the resume decision (which flags may change) and the stop signal flag.
The checkpoint's format (and where a run stands inside it) lives in checkpoint.py.

Usage: `cfg, run_dir, ckpt = plan_run(config, flags, run_dir, resume)`; `with StopFlag() as stop: ...`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from mnistcnn import checkpoint
from mnistcnn.config import ENGINE_KEYS, TrainConfig
from mnistcnn.config import from_dict as config_from_dict
from mnistcnn.distributed import World
from mnistcnn.errors import MnistcnnError


def plan_run(config: str | None, flags: dict, run_dir: Path | None, resume: Path | None):
    """(config, run folder, checkpoint or None) of a new run or of the run `resume` continues. `config`: a
    shipped recipe's name or a TOML file's path (`config.load_config`)."""
    if resume is None:
        from mnistcnn.config import load_config
        from mnistcnn.rundir import default_run_dir

        return load_config(config, flags), run_dir or default_run_dir(), None
    if config is not None or run_dir is not None:
        raise MnistcnnError(
            "--resume takes the config and run folder from the checkpoint; drop --config/--run-dir"
        )
    return prepare_resume(resume, flags)


def prepare_resume(target: Path, overrides: dict) -> tuple[TrainConfig, Path, dict]:
    """The config, run folder and checkpoint to continue from. Every check that needs no data runs here, before
    anything is written: the checkpoint's schema with the resume requirements (optimizer state, a consistent
    position), the flags (recipe keys cannot change, engine keys are range-checked), the epoch count.
    The position is checked against the training set once it is loaded (`schema.check_steps`)."""
    path = Path(target)
    path = path / "last.pt" if path.is_dir() else path
    ckpt = checkpoint.load(path, resume=True)
    cfg = config_from_dict(ckpt["config"], source=str(path))  # passed the schema: cannot fail
    given = {k: v for k, v in overrides.items() if v is not None}
    changed = [k for k, v in given.items() if k not in ENGINE_KEYS and getattr(cfg, k) != v]
    if changed:
        was = ", ".join(f"--{k.replace('_', '-')} (was {getattr(cfg, k)!r})" for k in changed)
        raise MnistcnnError(
            f"--resume continues the saved recipe; {was} cannot change. Start a new run instead"
        )
    cfg = config_from_dict(
        {k: v for k, v in given.items() if k in ENGINE_KEYS}, base=cfg, source="command-line flags"
    )
    if cfg.epochs <= ckpt["epoch"]:
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
    """Inside an epoch. Single process: the signal flag. Data-parallel: every rank must stop at the same step,
    so the ranks agree (one tiny all-reduce, one host read) every 16 chunks."""
    if world.distributed and calls % 16:
        return False
    return agreed_stop(stop, world)


def agreed_stop(stop: StopFlag, world: World) -> bool:
    """Whether a signal arrived; under torchrun a collective (every rank must call it at the same point) after
    which a rank that got no signal itself stops as if sent SIGTERM."""
    agreed = world.any_(stop.signum is not None)  # the flag itself in a single process
    if agreed and stop.signum is None:
        stop.signum = signal.SIGTERM
    return agreed
