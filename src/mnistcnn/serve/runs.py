"""What the server may read: the checkpoint, run folder or runs folder it was given, and nothing else.

Usage: `source = Source.resolve(Path("runs"))`; `source.run("20261128-081500")`; `read_after(path, offset)`.
Run names from a request are looked up in a fresh listing of the folder, never joined into a path. The files
follow safeio's policy: a run folder, and each file read in it, must lie inside the served folder once links are
resolved; only regular files are opened; the listing reads the tail of metrics.jsonl, a poll one chunk of it.
A name that is not UTF-8 (or holds control characters) is listed, and looked up, in its escaped form.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mnistcnn import safeio
from mnistcnn.errors import MnistcnnError
from mnistcnn.outputs import LOCK, is_run_dir
from mnistcnn.rundir import parse_record
from mnistcnn.safeio import shown

CHECKPOINTS = ("last.pt", "best.pt")  # checkpoint.load's order for a run folder
MAX_RECORDS = 20_000  # per metrics answer; the page asks again from the returned offset
CHUNK = 8 * safeio.MiB  # of metrics.jsonl read per poll
TAIL, SCAN = safeio.MiB, 16 * safeio.MiB  # the listing reads the tail back to the last epoch record, so far


class NotFound(MnistcnnError):
    status = 404


def checkpoint_in(run: Path) -> Path | None:
    """The run's checkpoint file, resolved, if it has one; Refused when it is a link out of the run folder."""
    path = next((run / n for n in CHECKPOINTS if (run / n).is_file()), None)
    return None if path is None else safeio.inside(path, run)


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
            return {shown(root.name): root}
        found: dict[str, Path] = {}
        for p in sorted(root.iterdir()):
            if p.is_dir() and is_run_dir(p) and _inside(p, root):
                found.setdefault(shown(p.name), p)  # two names escaping alike: the first is served
        return found

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
            return shown(self.fixed.name), self.fixed
        listing = self.runs()
        found = [(p, c) for p in listing.values() if _is_mynet(p) and (c := _checkpoint_or_none(p))]
        if not found:
            where = f"{self.root}/" if self.root else "the given folder"
            others = sorted(n for n, p in listing.items() if not _is_mynet(p))
            if others:  # generative runs only: their tabs work, the digit-reading ones need a classifier
                raise NotFound(
                    f"no MyNet checkpoint in {where} yet (its runs are generative: {', '.join(others[:5])}; the "
                    "Generate tab shows them); train a classifier with `mnistcnn train` to read digits"
                )
            raise NotFound(
                f"no checkpoint in {where} yet; train one with `mnistcnn train` (or pass `mnistcnn serve "
                "RUN_DIR`), then reload this page"
            )
        run_dir, path = max(found, key=lambda pc: _mtime(pc[0] / "metrics.jsonl", pc[1]))
        return shown(run_dir.name), path


def model_of(run: Path) -> str:
    """The kind a run folder trains, from its config.json ("mynet" when it says none)."""
    return _json(run / "config.json", run).get("model", "mynet")


def _is_mynet(run: Path) -> bool:
    """A MyNet run (the page reads digits with it); the generative kinds' runs are listed, never the default."""
    return model_of(run) == "mynet"


def _inside(path: Path, root: Path) -> bool:
    try:
        safeio.inside(path, root)
    except safeio.Refused:
        return False
    return True


def _checkpoint_or_none(run: Path) -> Path | None:
    try:
        return checkpoint_in(run)
    except safeio.Refused:
        return None


def _mtime(*paths: Path) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def describe(name: str, run: Path) -> dict:
    """A run's row in the listing: its config, epochs done, final test accuracy, whether it is training. Reads
    config.json (capped) and the tail of metrics.jsonl: a listing costs the same whatever a run has logged."""
    config = _json(run / "config.json", run)
    epoch, test, mtime = _newest_records(run / "metrics.jsonl", run)
    return {
        "name": name,
        "model": config.get("model", "mynet"),
        "config": config,
        "epochs_done": epoch.get("epoch", 0),
        "epochs": config.get("epochs"),
        "train_acc": epoch.get("train_acc"),
        "val_acc": epoch.get("val_acc"),
        "test_acc": test.get("test_acc") if test else None,
        "test_loss": test.get("test_loss") if test else None,  # a generative run's score: lower is better
        "checkpoint": _checkpoint_or_none(run) is not None,
        "last": _checkpoint_or_none(run) is not None and (run / "last.pt").is_file(),  # what --resume reads
        "finished": test is not None,
        "training": test is None and _writing(run, mtime),
    }


def _writing(run: Path, mtime: float) -> bool:
    """A `mnistcnn train` holds the run folder's lock; a folder without one (written by hand or by an older
    version): its metrics changed in the last minute."""
    if (run / LOCK).exists():
        return locked_by(run) is not None
    return time.time() - mtime < 60


def locked_by(run: Path) -> str | None:
    """The pid holding the run folder's lock (a `mnistcnn train` writing it), or None when it is free."""
    try:
        fd = os.open(run / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # no lock file: no train has it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)  # closing drops a lock taken here
    return None


def _json(path: Path, run: Path) -> dict:
    """A JSON object of the run folder, or {} for anything else (missing, a link out, special, huge, not
    UTF-8 or holding an escaped lone surrogate, which no JSON answer can carry)."""
    try:
        value = json.loads(safeio.read_capped(path, safeio.CONFIG_CAP, within=run).decode("utf-8"))
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (OSError, ValueError, RecursionError, MnistcnnError):
        return {}
    return value if isinstance(value, dict) else {}


def _newest_records(path: Path, run: Path) -> tuple[dict, dict | None, float]:
    """(the last epoch record or {}, the last test record after it or None, mtime) of a metrics.jsonl,
    read backwards from its end, at most SCAN bytes; a missing or refused file is an empty run."""
    epoch, test = {}, None
    try:
        f = safeio.open_read(path, within=run)
    except (OSError, MnistcnnError):
        return epoch, test, 0.0
    with f:
        st = os.fstat(f.fileno())
        for line in _lines_backwards(f, st.st_size):
            rec = parse_record(line)
            if rec is not None and rec["type"] == "test" and test is None:
                test = rec
            elif rec is not None and rec["type"] == "epoch":
                epoch = rec
                break
    return epoch, test, st.st_mtime


def _lines_backwards(f, size: int):
    """The lines of a file from its end, TAIL bytes read at a time, SCAN bytes at most; a line longer than
    LINE_CAP is not kept whole (its pieces are no records)."""
    end, carry = size, b""
    while end > 0 and size - end < SCAN:
        start = max(0, end - TAIL)
        f.seek(start)
        lines = (f.read(end - start) + carry).split(b"\n")
        carry = lines.pop(0) if start > 0 else b""
        if len(carry) > safeio.LINE_CAP:
            carry = b""
        yield from reversed(lines)
        end = start


def read_after(path: Path, offset: int) -> dict:
    """The metrics records from byte `offset` on, and the offset to ask from next time.

    Only whole lines are read (a line being written is left for the next poll), at most CHUNK bytes per answer
    (a run that logged gigabytes is sent a chunk per poll). A file shorter than `offset` was rewritten (a
    resumed run cuts lines off): everything is sent again with `"reset": true`. The file must lie in its run
    folder and be a regular file (else 403/415 `{"error": ...}`).
    """
    if offset < 0:
        raise MnistcnnError(f"after must be >= 0; got {offset}")
    try:  # no is_file() first: the run folder may be deleted between a check and the open
        with safeio.open_read(path, within=path.parent) as f:
            size = f.seek(0, 2)
            reset = offset > size
            f.seek(0 if reset else offset)
            chunk = f.read(CHUNK)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return {"records": [], "offset": 0, "reset": offset > 0}
    base, end, pos, records = (0 if reset else offset), chunk.rfind(b"\n") + 1, 0, []
    if end == 0 and len(chunk) == CHUNK:  # a chunk without one newline is no record: step over it
        return {"records": [], "offset": base + len(chunk), "reset": reset}
    while pos < end and len(records) < MAX_RECORDS:
        stop = chunk.index(b"\n", pos)
        line, pos = chunk[pos:stop], stop + 1
        rec = parse_record(line)  # the run folder's own check; a bad line is skipped, as plot-loss does
        if rec is not None:
            records.append(rec)
    return {"records": records, "offset": base + pos, "reset": reset}
