"""What the server may read: the checkpoint, run folder or runs folder it was given, and nothing else.

Usage: `source = Source.resolve(Path("runs"))`; `source.run("20261128-081500")`; `read_after(path, offset)`.
Run names from a request are looked up in a fresh listing of the folder, never joined into a path.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from mnistcnn.errors import MnistcnnError
from mnistcnn.outputs import is_run_dir
from mnistcnn.rundir import parse_record, read_metrics

CHECKPOINTS = ("last.pt", "best.pt")  # checkpoint.load's order for a run folder
MAX_RECORDS = 20_000  # per metrics answer; the page asks again from the returned offset


class NotFound(MnistcnnError):
    status = 404


def checkpoint_in(run: Path) -> Path | None:
    return next((run / n for n in CHECKPOINTS if (run / n).is_file()), None)


@dataclass
class Source:
    """`root`: the folder whose run folders are listed; `fixed`: a checkpoint file given on the command line."""

    root: Path | None
    fixed: Path | None = None

    @classmethod
    def resolve(cls, target: Path | None) -> Source:
        if target is None:
            return cls(Path("runs"))  # may not exist yet: the page then says how to train
        target = Path(target).resolve()  # `mnistcnn serve .` inside a run folder: the run is named, not ""
        if target.is_file():
            return cls(target.parent if is_run_dir(target.parent) else None, fixed=target)
        if not target.is_dir():
            raise MnistcnnError(f"{target} does not exist; pass a checkpoint, a run folder or a runs folder")
        return cls(target)

    def runs(self) -> dict[str, Path]:
        """Name → folder of every run the server may show (the root itself when it is one run)."""
        root = self.root
        if root is None or not root.is_dir():
            return {}
        if is_run_dir(root):
            return {root.name: root}
        return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and is_run_dir(p)}

    def run(self, name: str) -> Path:
        path = self.runs().get(name)
        if path is None:
            raise NotFound(f"no run named {name!r}; GET /api/runs lists them")
        return path

    def checkpoint(self, run: str | None = None) -> tuple[str, Path]:
        """(label, checkpoint file) of run `run`, else the given checkpoint, else the newest run's."""
        if run:
            path = checkpoint_in(self.run(run))
            if path is None:
                raise NotFound(f"run {run!r} has no checkpoint yet (it appears after its first epoch)")
            return run, path
        if self.fixed is not None:
            return self.fixed.name, self.fixed
        found = [(p, c) for p in self.runs().values() if (c := checkpoint_in(p))]
        if not found:
            where = f"{self.root}/" if self.root else "the given folder"
            raise NotFound(
                f"no checkpoint in {where} yet; train one with `mnistcnn train` (or pass `mnistcnn serve "
                "RUN_DIR`), then reload this page"
            )
        run_dir, path = max(found, key=lambda pc: _mtime(pc[0] / "metrics.jsonl", pc[1]))
        return run_dir.name, path


def _mtime(*paths: Path) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def describe(name: str, run: Path) -> dict:
    """A run's row in the listing: its config, epochs done, final test accuracy, whether it is training."""
    config = _json(run / "config.json")
    metrics = run / "metrics.jsonl"
    try:
        records = read_metrics(metrics, skip_bad=True)[0] if metrics.is_file() else []
    except MnistcnnError:
        records = []  # an unreadable metrics.jsonl still lists the run
    epochs = [r for r in records if r.get("type") == "epoch"]
    test = next((r for r in reversed(records) if r.get("type") == "test"), None)
    last = epochs[-1] if epochs else {}
    recent = metrics.is_file() and time.time() - metrics.stat().st_mtime < 60
    return {
        "name": name,
        "config": config,
        "epochs_done": len(epochs),
        "epochs": config.get("epochs") if isinstance(config, dict) else None,
        "train_acc": last.get("train_acc"),
        "val_acc": last.get("val_acc"),
        "test_acc": test.get("test_acc") if test else None,
        "checkpoint": checkpoint_in(run) is not None,
        "training": test is None and recent,
    }


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_after(path: Path, offset: int) -> dict:
    """The metrics records from byte `offset` on, and the offset to ask from next time.

    Only whole lines are read (a line being written is left for the next poll). A file shorter than `offset`
    was rewritten (a resumed run cuts lines off): everything is sent again with `"reset": true`.
    """
    if offset < 0:
        raise MnistcnnError(f"after must be >= 0; got {offset}")
    try:  # no is_file() first: the run folder may be deleted between a check and the open
        with path.open("rb") as f:
            size = f.seek(0, 2)
            reset = offset > size
            f.seek(0 if reset else offset)
            chunk = f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return {"records": [], "offset": 0, "reset": offset > 0}
    base, end, pos, records = (0 if reset else offset), chunk.rfind(b"\n") + 1, 0, []
    while pos < end and len(records) < MAX_RECORDS:
        stop = chunk.index(b"\n", pos)
        line, pos = chunk[pos:stop], stop + 1
        rec = parse_record(line)  # the run folder's own check; a bad line is skipped, as plot-loss does
        if rec is not None:
            records.append(rec)
    return {"records": records, "offset": base + pos, "reset": reset}
