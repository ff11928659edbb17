"""The run folder: config.json, env.json, metrics.jsonl, last.pt, best.pt, loss.png, epochs/epoch-NNN.pt (with
--keep-epochs) — its lock, its identity (a run id in config.json and every checkpoint), and every write to it
through outputs.py.

Usage: `run = RunDir.create(path, recipe="fast")` (locked); `run.append({"type": "epoch", ...})`;
`checkpoint.save(run.snapshot_path(3), ...)`; `run.unlock()`; `records, skipped = read_metrics(path,
skip_bad=True)`; `snapshots(path)` → [(1, path/epochs/epoch-001.pt), ...]; `newest_run("runs")`.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from mnistcnn import outputs, safeio
from mnistcnn.errors import MnistcnnError
from mnistcnn.outputs import LOCK, is_run_dir
from mnistcnn.safeio import shown

_HINT = "free some space or fix the folder; the previous checkpoints are untouched"
EPOCHS = "epochs"  # --keep-epochs: the folder of the per-epoch snapshots, one epoch-NNN.pt each
_SNAPSHOT = re.compile(r"epoch-(\d{3,5})\.pt")


def snapshot_name(epoch: int) -> str:
    """epoch-001.pt for epoch 1 (three digits at least: sorted by name is sorted by epoch up to 999)."""
    return f"epoch-{epoch:03d}.pt"


def snapshot_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(run_dir) / EPOCHS / snapshot_name(epoch)


def snapshots(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, path) of each per-epoch snapshot of a run folder, sorted by epoch. Only regular files named as
    `snapshot_name` writes them count; anything else there (other names, folders, FIFOs, links resolving outside
    the run folder — safeio's policy — or an epochs folder that is itself such a link) is ignored."""
    run_dir = Path(run_dir)
    folder = run_dir / EPOCHS
    try:
        safeio.inside(folder, run_dir)
        entries = list(os.scandir(folder))
    except (OSError, safeio.Refused):  # none, not a folder, unreadable, or a link out of the run
        return []
    found = []
    for entry in entries:
        match = _SNAPSHOT.fullmatch(entry.name)
        if match is None or entry.name != snapshot_name(int(match.group(1))):
            continue  # epoch-1.pt, epoch-0001.pt: not a name this mnistcnn writes
        try:
            safeio.inside(entry.path, run_dir)
            regular = stat.S_ISREG(os.stat(entry.path).st_mode)
        except (OSError, safeio.Refused):
            continue
        if regular and int(match.group(1)) >= 1:
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


def default_run_dir(base: str | os.PathLike = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = Path(base) / stamp, 1
    while path.exists():
        path, n = Path(base) / f"{stamp}-{n}", n + 1
    return path


class RunDir:
    """A run folder held by this process: `lock()` first, then every write goes through `write_json`/`append`."""

    def __init__(self, path: Path, run_id: str | None = None) -> None:
        self.path, self.run_id = Path(path), run_id
        self.started_from: dict = {}  # {"recipe": name, file path or None} for config.json; {} if unknown
        self._lock_fd: int | None = None

    @classmethod
    def check_new(cls, path: str | os.PathLike) -> Path:
        """Refuse a folder that holds anything (a previous run's files are never overwritten); writes nothing."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise MnistcnnError(f"--run-dir {path} is a file; pass a folder path")
        if path.is_dir() and any(p.name != LOCK for p in path.iterdir()):
            what = "a previous run (use --resume to continue it)" if is_run_dir(path) else "other files"
            raise MnistcnnError(f"--run-dir {path} already holds {what}; choose a new or empty folder")
        return path

    @classmethod
    def create(cls, path: str | os.PathLike, recipe: str | None = None) -> RunDir:
        """A new run folder with a fresh run id, created and locked. `recipe`: what `--config` named (a shipped
        recipe's name or a file's absolute path; None: the built-in defaults), recorded in config.json."""
        path = cls.check_new(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MnistcnnError(
                f"cannot create run folder {path}: {e.strerror}; choose another --run-dir"
            ) from None
        run = cls(path, uuid.uuid4().hex)
        run.started_from = {"recipe": recipe}
        run.lock()
        try:
            cls.check_new(
                path
            )  # another train may have taken the empty folder between the check and the lock
        except MnistcnnError:
            run.unlock()
            raise
        return run

    @classmethod
    def reopen(cls, path: str | os.PathLike, ckpt: dict) -> RunDir:
        """The folder of a run being resumed: locked, its identity checked against the checkpoint's, then (the
        first write) its metrics.jsonl cut back to what `ckpt` holds (lines written after the checkpoint, e.g.
        before a hard kill, would otherwise appear twice)."""
        run = cls(Path(path))
        run.lock()
        try:
            run.run_id = identity(run.path, ckpt)
            run.started_from = started_from(run.path)
            if run.metrics_path.is_file():
                run._cut_back(ckpt)
        except MnistcnnError:  # nothing of this run is held when its folder cannot be taken up again
            run.unlock()
            raise
        return run

    def _cut_back(self, ckpt: dict) -> None:
        """metrics.jsonl rewritten with only the records `ckpt` has seen, streamed (any size, bounded memory)."""
        with (
            safeio.open_read(self.metrics_path, within=self.path, cap=safeio.METRICS_CAP) as src,
            outputs.atomic(self.metrics_path, _HINT) as dst,
        ):
            for r, _torn in records_of(src):
                if r is not None and (
                    (r["type"] == "batch" and r["step"] <= ckpt["step"])
                    or (r["type"] == "epoch" and r["epoch"] <= ckpt["epoch"])
                ):
                    dst.write((json.dumps(r, separators=(",", ":")) + "\n").encode())

    def lock(self) -> None:
        """Own the folder until `unlock` or the process ends (the kernel drops a flock of a dead process)."""
        lock = self.path / LOCK
        try:  # changed in place (truncated, our pid written): never through a link out of the folder
            fd = safeio.open_in_place(lock, os.O_RDWR | os.O_CREAT, "lock")
        except OSError as e:
            raise outputs.write_error(lock, e, "choose a writable run folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise MnistcnnError(
                f"{shown(self.path)} is in use by another mnistcnn train (pid {holder}); wait for it to finish"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            os.close(fd)
            raise outputs.write_error(lock, e, _HINT) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def write_json(self, name: str, obj: dict) -> None:
        outputs.write_bytes(self.path / name, (json.dumps(obj, indent=2) + "\n").encode(), _HINT)

    def write_config(self, config: dict) -> None:
        self.write_json("config.json", {**config, **self.started_from, "run_id": self.run_id})

    def append(self, *records: dict) -> None:
        payload = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        outputs.append_bytes(self.metrics_path, payload.encode(), _HINT)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def snapshot_path(self, epoch: int) -> Path:
        """Where epoch `epoch`'s snapshot goes, its folder made first: a real folder inside the run (a link
        there or a file of that name is refused, so nothing is written outside the run folder)."""
        folder = self.path / EPOCHS
        try:
            if not os.path.lexists(folder):
                folder.mkdir()
        except FileExistsError:
            pass  # made meanwhile; a link or a file is refused below
        except OSError as e:
            raise outputs.write_error(folder, e, _HINT) from None
        try:
            mode = os.lstat(folder).st_mode
        except OSError as e:  # removed meanwhile
            raise outputs.write_error(folder, e, _HINT) from None
        if not stat.S_ISDIR(mode):
            raise MnistcnnError(
                f"{shown(folder)} is not a folder (a link or a file); the per-epoch snapshots go into a real "
                "folder of the run: move it away"
            )
        return snapshot_path(self.path, epoch)


def identity(folder: Path, ckpt: dict) -> str:
    """The run id a resume continues under; refuses a checkpoint of another run than the folder's.

    The folder's config.json names its run id. A checkpoint with a different id is refused. A checkpoint or a
    folder from before run ids (mnistcnn <= 0.x) is accepted when the folder's config equals the checkpoint's,
    or when the folder has no config.json (a checkpoint copied into a new folder starts a fork there). Only the
    recipe is compared: a resume may have changed config.ENGINE_KEYS such as epochs or device."""
    theirs = ckpt.get("run_id")
    config = folder / "config.json"
    if not config.is_file():
        return theirs if isinstance(theirs, str) else uuid.uuid4().hex
    try:
        saved = json.loads(safeio.read_capped(config, safeio.CONFIG_CAP, within=folder))
    except (OSError, ValueError) as e:
        raise MnistcnnError(
            f"{config} is unreadable ({e!s:.80}); this run folder cannot be resumed safely"
        ) from None
    if not isinstance(saved, dict):
        raise MnistcnnError(f"{config} is not an mnistcnn config; this run folder cannot be resumed safely")
    ours = saved.pop("run_id", None)
    saved.pop("recipe", None)  # where the run started from, not what it trains
    if isinstance(ours, str) and isinstance(theirs, str):
        if ours == theirs:
            return ours
    elif _recipe(saved) == _recipe(ckpt.get("config")):
        return ours if isinstance(ours, str) else theirs if isinstance(theirs, str) else uuid.uuid4().hex
    raise MnistcnnError(
        f"the checkpoint belongs to another run than {folder} (see its config.json); resuming would overwrite "
        f"that run's files. Resume {folder / 'last.pt'}, or copy the checkpoint into an empty folder and resume there"
    )


def started_from(folder: Path) -> dict:
    """{"recipe": ...} as the folder's config.json names it (kept across resumes); {} for a folder from before
    config.json named its recipe, or without a readable one."""
    try:
        saved = json.loads((folder / "config.json").read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or "recipe" not in saved:
        return {}
    recipe = saved["recipe"]
    return {"recipe": recipe} if recipe is None or isinstance(recipe, str) else {}


def _recipe(config) -> dict | None:
    from mnistcnn.config import ENGINE_KEYS  # here: plot-loss reads run folders without loading pydantic

    return {k: v for k, v in config.items() if k not in ENGINE_KEYS} if isinstance(config, dict) else None


def read_metrics(path: Path, skip_bad: bool = False, within: Path | None = None) -> tuple[list[dict], int]:
    """(records, lines skipped) of a metrics.jsonl (inside the folder `within` when given, at most METRICS_CAP
    bytes, streamed): a torn last line (killed mid-write) is always skipped; other bad lines (not UTF-8, not
    JSON, missing keys, wrong types, longer than any record) raise unless `skip_bad`."""
    records, skipped = [], 0
    try:
        with safeio.open_read(path, within, safeio.METRICS_CAP) as f:
            for i, (rec, torn) in enumerate(records_of(f)):
                if rec is not None:
                    records.append(rec)
                elif torn:
                    continue  # torn by a kill mid-write
                elif skip_bad:
                    skipped += 1
                else:
                    raise MnistcnnError(f"{shown(path)} line {i + 1} is not an mnistcnn metrics record")
    except OSError as e:
        raise MnistcnnError(f"cannot read {shown(path)}: {e.strerror}") from None
    return records, skipped


def records_of(f) -> Iterator[tuple[dict | None, bool]]:
    """(record or None, torn) for each line of a binary file, one line in memory at a time; `torn`: the last
    line, without its newline. A line longer than LINE_CAP is no record (it is skipped over, not held)."""
    cap = safeio.LINE_CAP
    while line := f.readline(cap + 1):
        if len(line) > cap and not line.endswith(b"\n"):
            while (more := f.readline(cap + 1)) and not more.endswith(b"\n"):
                pass
            yield None, False
            continue
        yield parse_record(line), not line.endswith(b"\n")


_NUMBER = (int, float)
_SCHEMA = {  # required keys of each record type and their types (bool is not a number here)
    "batch": {"epoch": int, "step": int, "loss": _NUMBER},
    "epoch": {"epoch": int, "seconds": _NUMBER},
    "test": {"epoch": int},
}
# every kind's figures (MyNet: accuracies; ae/vae/cvae: reconstruction and KL; gan: D and G): present ones are numbers
_OPTIONAL = {
    key: _NUMBER
    for key in (
        "val_acc",
        "val_loss",
        "train_loss",
        "lr",
        "train_acc",
        "test_acc",
        "test_loss",
        "g_loss",
        "train_g_loss",
        "train_recon",
        "train_kl",
        "val_recon",
        "val_kl",
        "test_recon",
        "test_kl",
        "val_d_real",
        "val_d_fake",
        "test_d_real",
        "test_d_fake",
    )
}


def parse_record(line: bytes) -> dict | None:
    """One valid record, or None."""
    try:
        text = line.decode("utf-8")
        rec = json.loads(text)
        if "\\u" in text:  # an escaped lone surrogate would make every JSON answer holding it fail
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):
        return None
    if not isinstance(rec, dict) or rec.get("type") not in _SCHEMA:
        return None
    need = {**_SCHEMA[rec["type"]], **{k: t for k, t in _OPTIONAL.items() if k in rec}}
    for key, kind in need.items():
        value = rec.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            return None
    return rec


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
