"""Checkpoints: plain dicts of tensors and JSON-like values, written atomically, loaded with weights_only=True.

Usage: `save(path, state)`; `ckpt = load(path)`; `model = model_from_checkpoint(ckpt)`.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from mnistcnn import __version__
from mnistcnn.errors import CheckpointError

FORMAT_VERSION = 1  # bump when the dict's layout changes; load refuses newer ones
REQUIRED = ("model", "config", "version")


def save(path: str | os.PathLike, state: dict) -> None:
    """Write to a temporary file in the same folder, fsync, then os.replace: a crash, a full disk or a second
    Ctrl-C leaves either the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    state = {**state, "version": FORMAT_VERSION, "mnistcnn_version": __version__}
    try:
        with tmp.open("wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {e.strerror or e}; free some space or choose another --run-dir "
            "(the previous checkpoint is untouched)"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True: pickled code is refused, never run."""
    path = Path(path)
    if path.is_dir():
        for name in ("last.pt", "best.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path} is a folder without last.pt or best.pt; pass a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass RUN_DIR/last.pt or RUN_DIR/best.pt")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes: the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not zipfile.is_zipfile(path):
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
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in REQUIRED):
        raise CheckpointError(
            f"{path} is a torch file but not an mnistcnn checkpoint (needs keys {', '.join(REQUIRED)})"
        )
    version = ckpt["version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}, newer than this mnistcnn understands ({FORMAT_VERSION}); "
            "upgrade mnistcnn"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "checkpoint"):
    """Rebuild MyNet from the checkpoint alone (its config says which activation)."""
    from mnistcnn.model import MyNet

    config = ckpt.get("config") or {}
    activation = config.get("activation", "relu") if isinstance(config, dict) else "relu"
    try:
        model = MyNet(activation=activation)
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{path} does not hold MyNet weights ({str(e).splitlines()[0][:120]})"
        ) from None
    return model.eval()


def load_model(path, device: str = "cpu"):
    """(checkpoint dict, MyNet in eval mode on `device`) from a checkpoint file or run folder."""
    from mnistcnn.engine import resolve_device

    dev = resolve_device(device)  # first: an absent device is reported before any file work
    ckpt = load(path)
    return ckpt, model_from_checkpoint(ckpt, path).to(dev)


def normalization(ckpt: dict) -> tuple[float, float]:
    """(mean, std) the checkpoint's model was trained with; (0, 1) for the lecture's plain ToTensor."""
    config = ckpt.get("config") or {}
    mean, std = config.get("mean"), config.get("std")
    if mean is None or std is None:
        return 0.0, 1.0
    return float(mean), float(std)
