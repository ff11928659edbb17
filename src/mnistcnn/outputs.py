"""Files a command writes: checked before any work, written whole or not at all, errors as one line.

Usage: `out = check_output(path, PICTURE, option="--out", inputs=[ckpt], force=False)` before the work;
`with atomic(out) as f: fig.savefig(f, format="png")` for the write; `append_bytes(path, b"...")` for a log.

The rule for an existing file (README "Output files"): it is replaced when it already holds the command's own
kind of output (a picture by a picture command, an export of the same format by export), or with `--force`.
Never, not even with --force: an input of the same command, a run folder's own files (config.json, env.json,
metrics.jsonl, checkpoints, its lock), or a folder.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import stat
import threading
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mnistcnn import safeio
from mnistcnn.errors import MnistcnnError
from mnistcnn.safeio import shown

LOCK = ".mnistcnn.lock"  # flock'ed by the train/resume that owns a run folder; holds its pid
RUN_FILES = ("config.json", "env.json", "metrics.jsonl", "last.pt", "best.pt", LOCK)


def is_run_dir(path: Path) -> bool:
    """A run folder: it holds a config.json or a metrics.jsonl."""
    return (path / "config.json").is_file() or (path / "metrics.jsonl").is_file()


# causes worth naming in plain words; anything else gets the OS's own text
_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file-size limit such as ulimit -f)",
    errno.EIO: "input/output error",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "the folder no longer exists",
}


@dataclass(frozen=True)
class Kind:
    """What a command writes: its extensions (the first is the default) and a test for 'a file of this kind'."""

    name: str
    suffixes: tuple[str, ...]
    signatures: tuple[bytes, ...] = ()  # a file starting with one of these is this kind of output
    zip_member: str = ""  # or: a zip archive with a member ending in this

    def holds(self, path: Path) -> bool:
        try:
            with safeio.open_read(path) as f:
                head = f.read(16)
                if any(head.startswith(s) for s in self.signatures):
                    return True
                if self.zip_member and zipfile.is_zipfile(f):
                    with zipfile.ZipFile(f) as z:
                        return any(n.endswith(self.zip_member) for n in z.namelist())
        except (OSError, MnistcnnError, zipfile.BadZipFile):
            return False
        return False


PICTURE = Kind(
    "a picture",
    (".png", ".svg", ".pdf", ".jpg", ".jpeg"),
    (b"\x89PNG\r\n\x1a\n", b"<?xml", b"<svg", b"%PDF-", b"\xff\xd8\xff"),
)
DIGITS = Kind("generated digits", (".png", ".npy"), (b"\x89PNG\r\n\x1a\n", b"\x93NUMPY"))  # mnistcnn generate
FILM = Kind(  # mnistcnn show progress: a film strip or an animation
    "a picture or animation",
    PICTURE.suffixes + (".gif", ".webp"),
    PICTURE.signatures + (b"GIF87a", b"GIF89a", b"RIFF"),
)
ONNX = Kind("an ONNX export", (".onnx",), (b"\x08",))  # ModelProto starts with field 1 (ir_version)
TORCHSCRIPT = Kind("a TorchScript export", (".pt", ".pth", ".ts"), zip_member="/constants.pkl")


def cause(e: BaseException) -> str:
    """The reason of a failed write in a few plain words."""
    if isinstance(e, OSError) and e.errno in _CAUSES:
        return _CAUSES[e.errno]
    if isinstance(e, OSError) and e.errno is not None:
        return (e.strerror or str(e) or type(e).__name__).lower()
    text = str(e).lower()  # torch.save's failures carry no errno (see checkpoint.save)
    for code, words in _CAUSES.items():
        if os.strerror(code).lower() in text:
            return words
    return "the write failed (is the disk full, or a file-size limit reached?)"


def write_error(path: Path, e: BaseException, hint: str = "") -> MnistcnnError:
    return MnistcnnError(f"cannot write {shown(path)}: {cause(e)}{'; ' + hint if hint else ''}")


def check_output(
    path: str | os.PathLike,
    kind: Kind,
    option: str = "--out",
    inputs: Iterable[str | os.PathLike | None] = (),
    force: bool = False,
    folders: bool = False,
) -> Path:
    """The path the command will write, checked before any work; raises MnistcnnError naming the problem.

    A name without an extension gets the kind's default one (the returned path is the file really written).
    An input folder stands for a run folder's files, or with `folders` for every file in it (predict's images).
    """
    path = Path(path)
    if path.suffix == "" and not path.is_dir():
        path = path.with_name(path.name + kind.suffixes[0])
    if path.is_dir():
        raise MnistcnnError(
            f"{option} {path} is a folder; give a file name such as {path / ('x' + kind.suffixes[0])}"
        )
    _check_not_input(path, option, inputs, folders)
    _check_not_run_file(path, option)
    if path.suffix.lower() not in kind.suffixes:
        raise MnistcnnError(
            f"{option} {path}: unknown extension {path.suffix!r} for {kind.name}; use {', '.join(kind.suffixes)}"
        )
    _check_folder(path, option)
    _check_regular(path, option)
    if path.exists() and not force and not kind.holds(path):
        raise MnistcnnError(
            f"{option} {path} exists and is not {kind.name}; choose another name or pass --force to replace it"
        )
    return path


def _same(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file (an output that does not exist yet is no input)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_not_input(path: Path, option: str, inputs, folders: bool) -> None:
    for given in inputs:
        if given is None:
            continue
        given = Path(given)
        candidates = [given]
        if given.is_dir():  # a run folder stands for its checkpoints and metrics
            candidates = [given / name for name in RUN_FILES] + ([given / path.name] if folders else [])
        if any(_same(path, c) for c in candidates):
            raise MnistcnnError(
                f"{option} {path} is an input of this command; write the output somewhere else"
            )


def _check_not_run_file(path: Path, option: str) -> None:
    if not is_run_dir(path.parent):
        return
    if path.name in RUN_FILES or (path.suffix == ".pt" and path.exists()):
        raise MnistcnnError(
            f"{option} {path} is a file of the run folder {path.parent}; write the output somewhere else"
        )


def _check_folder(path: Path, option: str) -> None:
    folder = path.parent
    if not folder.exists():
        raise MnistcnnError(f"{option} {path}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise MnistcnnError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MnistcnnError(f"{option} {path}: folder {folder} is not writable; choose another place")


def _check_regular(path: Path, option: str) -> None:
    """An existing output that is a FIFO, a device or a socket is never opened (a FIFO would hang) or replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        raise MnistcnnError(f"{option} {path} exists and is not a regular file; choose another name")


@contextmanager
def atomic(path: str | os.PathLike, hint: str = "") -> Iterator:
    """A binary file object whose bytes replace `path` only when the block ends without error: written to a
    temporary file beside it (created new: O_EXCL never follows a link planted there), fsync'ed, then moved
    into place (a link at `path` is replaced, never written through). Any failure leaves the old file (or
    none) and becomes one MnistcnnError naming `path` and the cause. A signal meanwhile: where a handler of the
    program's own only sets a flag (training, see resume.py), the write completes; where SIGTERM/SIGHUP would
    kill at once, the write is rolled back first (`_rolled_back_on_signal`); SIGINT's KeyboardInterrupt too."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with _rolled_back_on_signal():
        try:
            with _create(tmp) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            _discard(tmp)
            raise write_error(path, e, hint) from None
        except BaseException:
            _discard(tmp)
            raise


def _create(tmp: Path):
    try:
        return open(tmp, "xb")
    except FileExistsError:  # left by a killed process with our pid, or a link planted there: gone, then anew
        tmp.unlink()
        return open(tmp, "xb")


class _Signalled(BaseException):
    """Raised inside an atomic write by a signal whose default action would kill the process mid-write."""


_FATAL = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextmanager
def _rolled_back_on_signal() -> Iterator[None]:
    """SIGTERM/SIGHUP left at their default action raise `_Signalled` in the write instead (it removes its
    temporary file); then the signal is sent again with the default action: the process ends as it would have
    (exit 143 for SIGTERM), its temporary file gone. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def handler(signum, frame):
        caught.append(signum)
        if len(caught) == 1:  # a second signal during the roll-back only waits for it
            raise _Signalled(signum)

    saved = {s: signal.signal(s, handler) for s in _FATAL if signal.getsignal(s) == signal.SIG_DFL}
    try:
        yield
    finally:
        for s, old in saved.items():
            signal.signal(s, old)
        if caught:
            os.kill(os.getpid(), caught[0])


def save_figure(fig, out: str | os.PathLike) -> Path:
    """A matplotlib figure written atomically, its format from the extension (PNG without one)."""
    out = Path(out)
    with atomic(out) as f:
        fig.savefig(f, format=out.suffix[1:].lower() or "png", dpi=120)
    return out


def write_bytes(path: str | os.PathLike, payload: bytes, hint: str = "") -> Path:
    with atomic(path, hint) as f:
        f.write(payload)
    return Path(path)


def append_bytes(path: str | os.PathLike, payload: bytes, hint: str = "") -> None:
    """Append whole lines or nothing: a failed write is cut back to the previous end (no torn record)."""
    path = Path(path)
    try:  # in place: never through a link, never into a FIFO or a file shared by a hard link
        f = open(path, "ab", buffering=0, opener=safeio.no_follow_opener("append to"))  # noqa: SIM115
    except OSError as e:
        raise write_error(path, e, hint) from None
    with f:
        end = f.seek(0, os.SEEK_END)
        try:
            view = memoryview(payload)
            while view:
                view = view[f.write(view) :]
        except OSError as e:
            with suppress(OSError):  # if even this fails, the reader skips a torn last line
                os.ftruncate(f.fileno(), end)
            raise write_error(path, e, hint) from None


def _discard(tmp: Path) -> None:
    with suppress(OSError):
        tmp.unlink(missing_ok=True)


def json_safe(value):
    """NaN/inf (a model whose huge weights overflow) become null, so `--json` output and the server's answers
    stay valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
