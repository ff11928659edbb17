"""A fault-injection harness in the style of SQLite's I/O-error tests: the Nth write operation under a folder fails.

Usage (in a test): `faults = Faults(tmp_path); faults.install(monkeypatch); faults.arm(3, errno.ENOSPC)`, then run
a command; `faults.failed` says which operation failed (None: the command did fewer than 3 writes).

Counted operations, only for paths under the folder: open for writing (builtins.open, io.open, hence
Path.open/write_bytes), the first write() on each such file (a failing one writes half its bytes first, as a
full disk does), os.open with a write flag, os.write and os.ftruncate on such a descriptor (the run folder's
lock), os.mkdir, os.fsync, os.replace and torch.save. torch.save fails the way it does on a full disk
(RuntimeError, no errno); the others raise OSError with the armed errno. `arm(n, INTERRUPT)` raises
KeyboardInterrupt there instead: what SIGINT does at that point of a command without a handler of its own.
With `Faults(root, reads=True)` reads count too: open for reading (builtins.open, os.open) and the first read()
on each file opened so (an image that cannot be read: EIO on a failing disk, EACCES).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import re

import torch

TMP = re.compile(r"^\.(.+)\.tmp\d*$")  # the temporary file of an atomic write names its target
CAUSES = {  # what the user must read for each injected fault
    errno.ENOSPC: "no space left on device",
    errno.EIO: "input/output error",
    errno.EACCES: "permission denied",
    "torch.save": "the write failed",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
INTERRUPT = "interrupt"  # arm(n, INTERRUPT): Ctrl-C at operation n


class Faults:
    def __init__(self, root, reads: bool = False) -> None:
        self.root, self.reads = os.path.realpath(root), reads
        self.arm(None, errno.ENOSPC)

    def arm(self, n: int | None, err: int) -> None:
        """Make operation `n` (1-based) fail with `err`; None counts without failing."""
        self.count, self.fail_at, self.err = 0, n, err
        self.failed: tuple[str, str] | None = None
        self.ops: list[tuple[str, str]] = []

    def hit(self, what: str, path) -> None:
        try:
            path = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return
        if not path.startswith(self.root + os.sep):
            return
        self.count += 1
        self.ops.append((what, path))
        if self.count != self.fail_at:
            return
        self.failed = (what, path)
        if self.err == INTERRUPT:
            raise KeyboardInterrupt
        if what == "torch.save":
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1664 vs 1558")
        raise OSError(self.err, os.strerror(self.err), path)

    def expected(self) -> tuple[str, str]:
        """(file name the error must name, cause it must give) for the operation that failed."""
        what, path = self.failed
        name = os.path.basename(path)
        match = TMP.match(name)
        return (match.group(1) if match else name), CAUSES["torch.save" if what == "torch.save" else self.err]

    def install(self, mp) -> None:
        real_open, real_os_open, real_write, real_ftruncate = builtins.open, os.open, os.write, os.ftruncate
        real_mkdir, real_fsync, real_replace, real_save = os.mkdir, os.fsync, os.replace, torch.save

        def opener(file, mode="r", *args, **kwargs):
            named = isinstance(file, (str, bytes, os.PathLike))
            writing = named and any(c in mode for c in "wax+")
            reading = named and self.reads and not writing
            if writing or reading:
                self.hit("open" if writing else "open-read", file)
            f = real_open(file, mode, *args, **kwargs)
            return _Watched(f, self, file) if writing or reading else f

        def os_open(path, flags, *args, **kwargs):
            if flags & _WRITE_FLAGS or self.reads:
                self.hit("os.open", path)
            return real_os_open(path, flags, *args, **kwargs)

        def fd_path(fd):
            try:
                return os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return None

        def os_write(fd, data):
            self.hit("os.write", fd_path(fd))
            return real_write(fd, data)

        def ftruncate(fd, length):
            self.hit("os.ftruncate", fd_path(fd))
            return real_ftruncate(fd, length)

        def mkdir(path, *args, **kwargs):
            self.hit("mkdir", path)
            return real_mkdir(path, *args, **kwargs)

        def fsync(fd):
            fd = fd if isinstance(fd, int) else fd.fileno()
            self.hit("fsync", os.readlink(f"/proc/self/fd/{fd}"))
            return real_fsync(fd)

        def replace(src, dst, *args, **kwargs):
            self.hit("replace", dst)
            return real_replace(src, dst, *args, **kwargs)

        def save(obj, f, *args, **kwargs):
            self.hit("torch.save", f._path if isinstance(f, _Watched) else f)
            return real_save(obj, f, *args, **kwargs)

        mp.setattr(builtins, "open", opener)
        mp.setattr(io, "open", opener)
        mp.setattr(os, "open", os_open)
        mp.setattr(os, "write", os_write)
        mp.setattr(os, "ftruncate", ftruncate)
        mp.setattr(os, "mkdir", mkdir)
        mp.setattr(os, "fsync", fsync)
        mp.setattr(os, "replace", replace)
        mp.setattr(torch, "save", save)


class _Watched:
    """A file opened for writing whose first write() is a counted operation."""

    def __init__(self, f, faults: Faults, path) -> None:
        self._f, self._faults, self._path, self._wrote, self._read = f, faults, path, False, False

    def read(self, *args):
        if not self._read:
            self._read = True
            self._faults.hit("read", self._path)
        return self._f.read(*args)

    def write(self, data):
        if not self._wrote:
            self._wrote = True
            try:
                self._faults.hit("write", self._path)
            except OSError:
                self._f.write(bytes(data)[: len(data) // 2])  # a short write, then the error: a full disk
                raise
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)
