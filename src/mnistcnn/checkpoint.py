"""The checkpoint format in one place: a plain dict of tensors and JSON-like values, built from a run, written
atomically, loaded with weights_only=True, turned back into a model, an optimizer state and a position.

Usage: `save(path, build(model, opt, cfg, epoch, batch, step, history, best, run_id=id))`; a weights-only
`save(path, snapshot(model, cfg, epoch, step, history))`; `ckpt = load(path)`;
`model = model_from_checkpoint(ckpt)`; `pos = Position.of(ckpt)`.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mnistcnn import __version__, outputs, safeio, schema
from mnistcnn.errors import CheckpointError, MnistcnnError
from mnistcnn.schema import is_int

FORMAT_VERSION = 1  # bump when the dict's layout changes; load refuses newer ones
_KEPT = "free some space or choose another --run-dir (the previous checkpoint is untouched)"


def save(path: str | os.PathLike, state: dict) -> None:
    """Write to a temporary file in the same folder, fsync, then os.replace: a crash, a full disk or a second
    Ctrl-C leaves either the old file or the new one, never half of one. A failure (OSError, or torch's
    RuntimeError on a full disk) is one CheckpointError naming the path and the cause."""
    state = {**state, "version": FORMAT_VERSION, "mnistcnn_version": __version__}
    try:
        with outputs.atomic(path, _KEPT) as f:
            try:
                torch.save(state, f)
            except RuntimeError as e:  # how torch.save reports a full disk: no OSError, no errno
                raise OSError(str(e)) from None
    except MnistcnnError as e:
        raise CheckpointError(str(e)) from None


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", resume: bool = False) -> dict:
    """Load a checkpoint with weights_only=True (pickled code is refused, never run) and check it against the
    schema (schema.py); `resume`: also what continuing the run needs. Any violation is one CheckpointError."""
    path, within = Path(path), None
    if path.is_dir():  # a run folder: its checkpoint must lie inside it (safeio's policy for links)
        for name in ("last.pt", "best.pt"):
            if (path / name).is_file():
                path, within = path / name, path
                break
        else:
            raise CheckpointError(f"{path} is a folder without last.pt or best.pt; pass a checkpoint file")
    if not path.exists():  # anything there but a regular file (a FIFO, a device) is refused by safeio
        raise CheckpointError(f"checkpoint {path} does not exist; pass RUN_DIR/last.pt or RUN_DIR/best.pt")
    try:
        f = safeio.open_read(path, within, safeio.CHECKPOINT_CAP)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    except safeio.Refused as e:
        raise CheckpointError(str(e)) from None
    with f:
        ckpt = _unpickled(f, path, map_location)
    version = ckpt.get("version") if isinstance(ckpt, dict) else None
    if is_int(version) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}, newer than this mnistcnn understands ({FORMAT_VERSION}); "
            "upgrade mnistcnn"
        )
    if isinstance(ckpt, dict) and "version" in ckpt and not (is_int(version) and version >= 1):
        raise CheckpointError(
            f"{path} is damaged or not from this mnistcnn: version must be 1..{FORMAT_VERSION}"
        )
    schema.check(ckpt, path, resume)
    return ckpt


def _unpickled(f, path: Path, map_location):
    """torch.load of an open checkpoint file with weights_only=True; every failure is one CheckpointError."""
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes: the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not zipfile.is_zipfile(f):
            raise CheckpointError(
                f"{path} is not a readable checkpoint (not a torch file, or truncated)"
            ) from None
        # torch's message is a page long; keep the line naming what was refused
        why = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
        raise CheckpointError(
            f"{path} is not a plain mnistcnn checkpoint: it holds pickled objects beyond tensors and numbers "
            f"and was not loaded ({why[:100] or 'weights_only refused it'}); only load files you trust"
        ) from None
    except Exception as e:  # noqa: BLE001  garbage bytes reach torch's unpickler: IndexError, TypeError, ...
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch file: {e!s:.100})"
        ) from None


def model_args(ckpt: dict) -> dict:
    """The constructor arguments of the checkpoint's model (older checkpoints: MyNet's, from the config)."""
    from mnistcnn import kinds

    return ckpt.get("model_args") or kinds.of_checkpoint(ckpt).args_of(ckpt["config"])


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "checkpoint"):
    """Rebuild the checkpoint's model (MyNet, or the generative kind it names) from one `load` accepted."""
    from mnistcnn import kinds

    kind = kinds.of_checkpoint(ckpt)
    model = kind.build(model_args(ckpt))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, TypeError, AttributeError, KeyError) as e:  # a dict load() never saw
        raise CheckpointError(
            f"{path} does not hold the weights of {kind.what} ({str(e).splitlines()[0][:120]})"
        ) from None
    return model.eval()


def load_model(path, device: str = "cpu", needs: str | None = "mynet", command: str = "this command"):
    """(checkpoint dict, its model in eval mode on `device`) from a checkpoint file or run folder. `needs`: the
    kinds `command` can use (kinds.require; None: any), checked before the model is built."""
    from mnistcnn import kinds
    from mnistcnn.engine import resolve_device

    dev = resolve_device(device)  # first: an absent device is reported before any file work
    ckpt = load(path)
    if needs is not None:
        kinds.require(ckpt, path, needs, command)
    return ckpt, model_from_checkpoint(ckpt, path).to(dev)


def normalization(ckpt: dict) -> tuple[float, float]:
    """(mean, std) the checkpoint's model was trained with; (0, 1) for the lecture's plain ToTensor.
    The values passed the config's checks in `load` (finite, std >= 1e-3)."""
    from mnistcnn.config import normalization as of_config

    if ckpt["config"].get("model", "mynet") != "mynet":
        return 0.0, 1.0  # generative kinds take pixels/255
    return of_config(ckpt["config"].get("mean"), ckpt["config"].get("std"))


@dataclass
class Position:
    """Where a run stands: epochs done, batches done in the current epoch, and what was measured so far."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best: float = float("-inf")  # the best score so far (higher is better: kinds' Task.score)
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    sums: list = field(default_factory=list)  # the kind's per-epoch sums so far (MyNet: [correct])
    seconds: float = 0.0

    @classmethod
    def of(cls, ckpt: dict | None) -> Position:
        if ckpt is None:
            return cls()
        partial = ckpt.get("partial") or {}
        history = [r for r in ckpt.get("metrics", []) if r.get("type") == "epoch"]
        best = ckpt.get("best")
        return cls(
            ckpt["epoch"],
            ckpt.get("batch", 0),
            ckpt["step"],
            float("-inf") if best is None else best,
            history,
            partial.get("losses", []),
            partial.get("sums", [partial.get("correct", 0)]),  # "correct": checkpoints before 0.5
            partial.get("seconds", 0.0),
        )


def build(
    model,
    optimizer,
    cfg,
    epoch,
    batch,
    step,
    history,
    best,
    partial=None,
    run_id=None,
    kind="mynet",
    model_args=None,
) -> dict:
    """Everything needed to continue exactly: `epoch` epochs done plus `batch` batches of the next one.

    No RNG state: the weights are drawn once from the seed and every epoch's order is a pure function of
    (seed, epoch), and a generative kind's noise of (seed, step), so the position alone says what comes next.
    `run_id`: the run folder's identity (resume refuses a checkpoint whose id differs from its folder's
    config.json). `kind`, `model_args`: what `model_from_checkpoint` builds (kinds.py)."""
    opt_state = optimizer.state_dict()
    for group in opt_state["param_groups"]:  # a tensor LR (CUDA graphs) is stored as a plain float
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = group["lr"].item()
    return {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt_state,
        "config": cfg.to_dict(),
        "epoch": epoch,
        "batch": batch,
        "step": step,
        "best": best if best != float("-inf") else None,
        "partial": partial or {},
        "metrics": list(history),
        "run_id": run_id,
        "kind": kind,
        "model_args": dict(model_args) if model_args is not None else {"activation": cfg.activation},
    }


def snapshot(model, cfg, epoch: int, step: int, history, run_id=None, kind="mynet", model_args=None) -> dict:
    """A per-epoch snapshot (--keep-epochs): the weights after `epoch` epochs and what loading them needs (kind,
    model_args, config with its normalisation, the epoch records so far) — no optimizer state, no position
    inside an epoch: `load` accepts it for eval, predict, show…; `load(..., resume=True)` refuses it."""
    return {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": cfg.to_dict(),
        "epoch": epoch,
        "step": step,
        "metrics": [r for r in history if r.get("type") == "epoch"],
        "run_id": run_id,
        "kind": kind,
        "model_args": dict(model_args) if model_args is not None else {"activation": cfg.activation},
        "snapshot": True,
    }


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state, keeping a tensor LR a tensor (CUDA graphs read it in place)."""
    lrs = [g["lr"] for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"the checkpoint's optimizer state does not fit this run ({e}); start a new run"
        ) from None
    for group, lr in zip(optimizer.param_groups, lrs):
        if isinstance(lr, torch.Tensor):
            lr.fill_(float(group["lr"]))
            group["lr"] = lr
