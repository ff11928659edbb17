"""The run folder: config.json, env.json, metrics.jsonl, last.pt, best.pt, loss.png.

Usage: `run = RunDir.create(path)`; `run.append({"type": "epoch", ...})`; `newest_run("runs")`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from mnistcnn.errors import MnistcnnError


def default_run_dir(base: str | os.PathLike = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = Path(base) / stamp, 1
    while path.exists():
        path, n = Path(base) / f"{stamp}-{n}", n + 1
    return path


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "metrics.jsonl").is_file()


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike) -> RunDir:
        """A new run folder; refuses one that holds anything (a previous run's files are never overwritten)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise MnistcnnError(f"--run-dir {path} is a file; pass a folder path")
        if path.is_dir() and any(path.iterdir()):
            what = "a previous run (use --resume to continue it)" if is_run_dir(path) else "other files"
            raise MnistcnnError(f"--run-dir {path} already holds {what}; choose a new or empty folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise MnistcnnError(
                f"cannot create run folder {path}: {e.strerror}; choose another --run-dir"
            ) from None
        return cls(path)

    @classmethod
    def reopen(cls, path: str | os.PathLike, ckpt: dict) -> RunDir:
        """The folder of a run being resumed, its metrics.jsonl cut back to what `ckpt` holds (lines written
        after the checkpoint, e.g. before a hard kill, would otherwise appear twice)."""
        run = cls(Path(path))
        if run.metrics_path.is_file():
            keep = [
                r
                for r in read_metrics(run.metrics_path)
                if (r.get("type") == "batch" and r.get("step", 0) <= ckpt["step"])
                or (r.get("type") == "epoch" and r.get("epoch", 0) <= ckpt["epoch"])
            ]
            tmp = run.path / ".metrics.jsonl.tmp"
            tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep))
            os.replace(tmp, run.metrics_path)
        return run

    def write_json(self, name: str, obj: dict) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, self.path / name)

    def append(self, *records: dict) -> None:
        with (self.path / "metrics.jsonl").open("a") as f:
            f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"


def read_metrics(path: Path) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (killed mid-write) is skipped."""
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise MnistcnnError(f"cannot read {path}: {e.strerror}") from None
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise MnistcnnError(
                f"{path} line {i + 1} is not JSON; is this an mnistcnn metrics.jsonl?"
            ) from None
        if isinstance(rec, dict):
            records.append(rec)
    return records


def newest_run(base: str | os.PathLike = "runs") -> Path:
    base = Path(base)
    runs = [p for p in base.iterdir() if (p / "metrics.jsonl").is_file()] if base.is_dir() else []
    if not runs:
        raise MnistcnnError(f"no run with a metrics.jsonl in {base}/; train first or pass a run folder")
    return max(runs, key=lambda p: (p / "metrics.jsonl").stat().st_mtime)


def environment(device, precision: str, data_source: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from mnistcnn import __version__
    from mnistcnn.engine import cpu_flags, describe

    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")) or f in ("fma", "sse4_2"))
    env = {
        "mnistcnn": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": _version_of("torchvision", version, PackageNotFoundError),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": describe(device),
        "precision": precision,
        "cpu_threads": torch.get_num_threads(),
        "cpu_flags": flags,
        "data_source": data_source,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def _version_of(name: str, version, missing) -> str | None:
    try:
        return version(name)  # importlib.metadata: importing torchvision itself costs seconds
    except missing:
        return None
