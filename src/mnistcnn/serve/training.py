"""Training from the page: `mnistcnn train` as a child process of the server, one at a time, stopped with SIGINT
(it saves last.pt, as Ctrl-C does) and continued with `--resume`; the child never outlives the server.

Usage: `trainer = Trainer(source, "cpu", data_dir, allowed=True)`; `trainer.start({"recipe": "fast", "epochs": 1})`
→ the run's name; `trainer.stop(name)`, `trainer.resume(name)`; `trainer.annotate(rows)` adds each run's
`state` (training, stopping, stopped, finished, failed or None), `resumable` and `message`; `trainer.close()`
when the server stops (SIGINT to a live child, then a kill after CLOSE_WAIT seconds).

The request's values are checked here, by TrainConfig, before anything starts (a mistake is a 400 naming its
field); the recipe is a shipped one by name, never a path; the child writes only into a new folder of the runs
folder served. Its output is kept in memory (the last TAIL lines): the run folder holds what `train` writes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

from mnistcnn import recipes
from mnistcnn.errors import ConfigError, MnistcnnError
from mnistcnn.outputs import is_run_dir
from mnistcnn.safeio import shown
from mnistcnn.serve.runs import Source, locked_by

# what the form may set: each a `mnistcnn train` flag (the rest of a run is its recipe's)
FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "activation",
    "seed",
    "train_limit",
    "keep_epochs",
)
DEFAULT_RECIPE = "fast"  # the form's first choice: MyNet to >= 99 % in a minute on a laptop
TAIL, TAIL_BYTES = 40, 16 * 1024  # the child's output answered: its last lines
CLOSE_WAIT = 30.0  # s the server waits, when it stops, for a child to save last.pt before killing it
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")
PR_SET_PDEATHSIG = 1


class Conflict(MnistcnnError):
    status = 409


class Forbidden(MnistcnnError):
    status = 403


class Invalid(MnistcnnError):
    """A value of the form that cannot be: 400 with the `field` it is in."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Child:
    """A `mnistcnn train` process started by this server, and what it said: its output goes to an unlinked
    temporary file (a pipe would break when the server dies, and the child would fail writing its last words
    instead of saving last.pt)."""

    name: str
    run: Path
    proc: subprocess.Popen
    config: dict
    log: typing.BinaryIO
    state: str = "training"  # → stopping → stopped; finished; failed
    message: str | None = None
    started: float = field(default_factory=time.time)

    def tail(self) -> list[str]:
        """The last TAIL lines of its output, control characters removed."""
        fd = self.log.fileno()
        size = os.fstat(fd).st_size
        text = os.pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES)).decode("utf-8", "replace")
        lines = [t for line in text.splitlines() if (t := ANSI.sub("", line).strip())]
        return lines[-TAIL:]

    def watch(self) -> None:
        """Settle its state when it exits (a thread of its own)."""
        code = self.proc.wait()
        tail = self.tail()
        if code == 0:  # its test accuracy (a MyNet run), not the hints that end the output
            self.state = "finished"
            self.message = next((t for t in tail if t.startswith("test accuracy")), None)
        elif self.state == "stopping":
            self.state, self.message = "stopped", tail[-1] if tail else "stopped before training began"
        else:
            self.state = "failed"
            self.message = tail[-1] if tail else f"mnistcnn train exited with status {code}"

    @property
    def alive(self) -> bool:
        return self.state in ("training", "stopping")


class Trainer:
    """The children of one server; `allowed` False (with `why`) refuses every start."""

    def __init__(
        self,
        source: Source,
        device: str,
        data_dir: Path | None,
        allowed: bool = True,
        why: str | None = None,
        python: str = sys.executable,
    ) -> None:
        self.source, self.device, self.python = source, device, python
        self.data_dir = None if data_dir is None else Path(os.path.abspath(data_dir))
        self.children: dict[str, Child] = {}
        self.lock = threading.Lock()
        # every child is forked by this one thread, alive as long as the server: a child's death signal
        # (PR_SET_PDEATHSIG) follows the thread that forked it, and a request's thread may end any time
        self.forker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mnistcnn forker")
        self.allowed, self.why = allowed, None if allowed else why or "training from the page is off"
        if allowed and (source.fixed is not None or source.root is None or is_run_dir(source.root)):
            self.allowed, self.why = (
                False,
                (
                    "this server shows one checkpoint or run; to train from the page, serve a runs folder "
                    "(mnistcnn serve runs)"
                ),
            )

    def active(self) -> Child | None:
        return next((c for c in self.children.values() if c.alive), None)

    def describe(self) -> dict:
        """GET /api/train: whether training is allowed (and why not), the recipes, the run in progress."""
        from mnistcnn.config import catalog

        active = self.active()
        last = max(self.children.values(), key=lambda c: c.started, default=None)
        return {
            "allowed": self.allowed,
            "why": self.why,
            "recipes": catalog(),
            "default": DEFAULT_RECIPE,
            "active": active.name if active else None,
            "last": None if last is None else {"run": last.name, "state": last.state, "output": last.tail()},
        }

    def _may_start(self) -> None:
        if not self.allowed:
            raise Forbidden(self.why or "training from the page is off")
        active = self.active()
        if active is not None:
            raise Conflict(f"run {active.name} is training; stop it first (one run from the page at a time)")

    def start(self, body: dict) -> str:
        """A new run of a shipped recipe with the form's values; answers its name once the child runs."""
        cfg = checked(body)
        with self.lock:
            self._may_start()
            from mnistcnn.rundir import default_run_dir

            run = Path(os.path.abspath(default_run_dir(self.source.root)))
            while shown(run.name) in self.children:  # a run started this second that has no folder yet
                run = run.with_name(run.name + "-1")
            args = ["train", "--config", body["recipe"], "--run-dir", str(run)]
            args += [flag for k in FLAGS if k in body for flag in as_flag(k, body[k])]
            return self._spawn(shown(run.name), run, args, {**cfg.to_dict(), "recipe": body["recipe"]})

    def resume(self, name: str, body: dict) -> str:
        """Continue a stopped run (`mnistcnn train --resume`); `epochs` in the body raises its total."""
        from mnistcnn.resume import prepare_resume

        extra = set(body) - {"epochs"}
        if extra:
            raise Invalid(f"resume takes only epochs; got {', '.join(sorted(extra))}", sorted(extra)[0])
        epochs = body.get("epochs")
        if epochs is not None and (type(epochs) is not int or epochs < 1):
            raise Invalid(f"epochs must be an integer >= 1; got {epochs!r}", "epochs")
        run = self.source.run(name)
        with self.lock:
            self._may_start()
            if not (run / "last.pt").is_file():
                raise Conflict(f"run {name} has no last.pt to continue from; start a new run")
            holder = locked_by(run)
            if holder:
                raise Conflict(f"run {name} is in use by another mnistcnn train (pid {holder}); wait for it")
            cfg, _, _ = prepare_resume(run, {"epochs": epochs})  # every check train --resume makes first
            args = ["train", "--resume", str(run)] + (["--epochs", str(epochs)] if epochs else [])
            return self._spawn(name, run, args, cfg.to_dict())

    def _spawn(self, name: str, run: Path, args: list[str], config: dict) -> str:
        args += ["--device", self.device] + (["--data-dir", str(self.data_dir)] if self.data_dir else [])
        env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
        log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the life of the child, read by tail()
        try:
            proc = self.forker.submit(
                subprocess.Popen,
                [self.python, "-m", "mnistcnn", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in serve's terminal reaches the child through serve only
                preexec_fn=_die_with_parent(os.getpid()),
            ).result()
        except OSError as e:
            log.close()
            raise MnistcnnError(f"cannot start mnistcnn train: {e.strerror or e}") from None
        child = Child(name, run, proc, config, log)
        self.children[name] = child
        threading.Thread(target=child.watch, name=f"mnistcnn train {name}", daemon=True).start()
        return name

    def stop(self, name: str) -> str:
        """SIGINT to the run's child: it saves last.pt after the current step and exits."""
        child = self.children.get(name)
        if child is None:
            self.source.run(name)  # 404 for no such run
            raise Conflict(f"run {name} was not started from this page; stop it where it runs (Ctrl-C)")
        with self.lock:
            if not child.alive:
                raise Conflict(f"run {name} is not training ({child.state})")
            if child.state == "training":
                child.state = "stopping"
                _signal(child.proc, signal.SIGINT)
        return child.state

    def annotate(self, rows: list[dict]) -> list[dict]:
        """Each run's state, resumable and message (a run started here: its child's; else from its files),
        and a row for a child whose folder does not exist yet (starting, or failed before it wrote one)."""
        busy = self.active() is not None
        for row in rows:
            child = self.children.get(row["name"])
            if child is not None:
                state, message = child.state, child.message
            elif row["finished"]:
                state, message = "finished", None
            elif (
                not row["training"] and row["last"] and row["epochs_done"] < (row["epochs"] or 0)
            ):  # free lock
                state, message = "stopped", "stopped before its last epoch: Resume continues it"
            else:
                state, message = None, None
            resumable = self.allowed and not busy and state == "stopped" and row["last"]
            row.update(state=state, message=message, resumable=bool(resumable))
        listed = {row["name"] for row in rows}
        rows += [starting_row(c) for c in self.children.values() if c.name not in listed]
        return rows

    def close(self, wait: float = CLOSE_WAIT, say=None) -> None:
        """Stop every live child (SIGINT: it saves last.pt), wait up to `wait` s, then kill what is left."""
        live = [c for c in self.children.values() if c.proc.poll() is None]
        for child in live:
            if say is not None:
                say(f"stopping {child.name}, started from the page: it saves last.pt first")
            if child.state == "training":
                child.state = "stopping"
            _signal(child.proc, signal.SIGINT)
        deadline = time.monotonic() + wait
        for child in live:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(child.proc, signal.SIGKILL)
                child.proc.wait()
            if say is not None and child.proc.returncode == 128 + signal.SIGINT:
                say(f"{child.name}: {child.tail()[-1]}" if child.tail() else f"{child.name} stopped")
        self.allowed, self.why = False, "the server is stopping"
        self.forker.shutdown(wait=False)


def checked(body: dict):
    """The TrainConfig a start request asks for; Invalid names the field of the first mistake."""
    from mnistcnn.config import load_config

    if not isinstance(body.get("recipe"), str):
        raise Invalid(
            "recipe is required: the name of a shipped recipe (GET /api/train lists them)", "recipe"
        )
    if body["recipe"] not in recipes.names():
        raise Invalid(recipes.unknown(body["recipe"]), "recipe")
    extra = [k for k in body if k != "recipe" and k not in FLAGS]
    if extra:
        raise Invalid(
            f"{shown(str(extra[0]))} cannot be set from the page; it takes {', '.join(FLAGS)}", extra[0]
        )
    try:
        return load_config(body["recipe"], {k: body[k] for k in FLAGS if k in body})
    except ConfigError as e:
        raise Invalid(str(e), e.key) from None


def as_flag(key: str, value) -> list[str]:
    """`mnistcnn train`'s flag for a checked value: --batch-size 64, --keep-epochs, --no-keep-epochs."""
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else flag.replace("--", "--no-", 1)]
    return [flag, repr(value) if isinstance(value, float) else str(value)]


def starting_row(child: Child) -> dict:
    """A page-started run that has no folder yet: its row from what the child was asked to do."""
    return {
        "name": child.name,
        "model": child.config.get("model", "mynet"),
        "config": child.config,
        "epochs_done": 0,
        "epochs": child.config.get("epochs"),
        "train_acc": None,
        "val_acc": None,
        "test_acc": None,
        "checkpoint": False,
        "training": child.alive,
        "finished": False,
        "last": False,
        "state": child.state,
        "message": child.message,
        "resumable": False,
    }


def _signal(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # it has just exited
        os.killpg(proc.pid, sig)  # its own session: the child and anything it started (a data loader)


def _die_with_parent(parent: int):
    """In the child before exec: SIGINT when the server dies however it dies (Linux), so the run is saved."""

    prctl = None
    if sys.platform.startswith("linux"):  # looked up here: the child between fork and exec imports nothing
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGINT)
        if os.getppid() != parent:  # the server died before prctl
            os.kill(os.getpid(), signal.SIGINT)

    return setup
