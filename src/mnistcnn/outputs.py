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
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mnistcnn.errors import MnistcnnError

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
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError:
            return False
        if any(head.startswith(s) for s in self.signatures):
            return True
        if self.zip_member and zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as z:
                    return any(n.endswith(self.zip_member) for n in z.namelist())
            except (OSError, zipfile.BadZipFile):
                return False
        return False


PICTURE = Kind(
    "a picture",
    (".png", ".svg", ".pdf", ".jpg", ".jpeg"),
    (b"\x89PNG\r\n\x1a\n", b"<?xml", b"<svg", b"%PDF-", b"\xff\xd8\xff"),
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
    return MnistcnnError(f"cannot write {path}: {cause(e)}{'; ' + hint if hint else ''}")


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


@contextmanager
def atomic(path: str | os.PathLike, hint: str = "") -> Iterator:
    """A binary file object whose bytes replace `path` only when the block ends without error: written to a
    temporary file beside it, fsync'ed, then moved into place. Any failure leaves the old file (or none) and
    becomes one MnistcnnError naming `path` and the cause; a signal meanwhile only sets a flag (see resume.py),
    so the write in progress always completes or rolls back."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
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
    end = None
    try:
        with open(path, "ab", buffering=0) as f:
            end = f.seek(0, os.SEEK_END)
            view = memoryview(payload)
            while view:
                view = view[f.write(view) :]
    except OSError as e:
        if end is not None:
            with suppress(OSError):  # if even this fails, the reader skips a torn last line
                os.truncate(path, end)
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
