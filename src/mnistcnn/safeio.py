"""The one policy for files mnistcnn opens, and for names it prints.

Usage: `data = read_capped(run / "config.json", CONFIG_CAP, within=run)`; `with open_read(path) as f: ...`;
`fd = open_in_place(lock)` for a file changed where it lies; `shown(path)` for any name or user text in a message.

- Links: a file found inside a folder the user named (a run folder's config.json, metrics.jsonl, checkpoints;
  a served runs folder) is read only when it resolves inside that folder. A file changed in place (the run
  folder's lock, a metrics.jsonl append) is opened with O_NOFOLLOW and refused when other hard links share it;
  a replaced file (outputs.atomic) is written new with O_EXCL and renamed over the old name, so a link there is
  replaced, never written through. A file the user names directly may be a link: they chose it.
- Special files: every open is O_NONBLOCK (a FIFO cannot hang it) and checked with fstat; anything but a regular
  file (a FIFO, a device such as /dev/zero, a socket, a folder) is one line.
- Sizes: a reader of a file that grows passes a byte cap (a run's files) or streams (metrics.jsonl).
- Names: `shown` escapes control characters, bidi overrides and bytes that are not UTF-8, so a name can neither
  break a one-line message nor drive the terminal. It leaves a backslash alone: escaping twice changes nothing.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from mnistcnn.errors import MnistcnnError

KiB, MiB = 1 << 10, 1 << 20
CONFIG_CAP = 1 * MiB  # config.json, env.json, a TOML recipe, the data stamp: a few KB each
METRICS_CAP = 256 * MiB  # ~3.5 M records; a 10000-epoch run logging every 100 steps writes ~4 MB
CHECKPOINT_CAP = 256 * MiB  # MyNet with Adam's state is ~2.5 MB
LINE_CAP = 64 * KiB  # a metrics record is < 300 bytes; a longer "line" is not one

_KIND = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
    stat.S_IFLNK: "a symbolic link",
}


class Refused(MnistcnnError):
    """A file the policy will not open: a link out of its folder, not a regular file, over its size cap.
    `status` is the web API's answer for it."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def inside(path: str | os.PathLike, within: str | os.PathLike) -> Path:
    """`path` with every link resolved, refused unless that lies inside `within` (itself resolved)."""
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(within))
    if real != root and not real.is_relative_to(root):
        raise Refused(
            f"{shown(path)} is a link to outside {shown(within)}; mnistcnn reads nothing outside the folder it "
            "was given: replace the link with the file itself"
        )
    return real


def _checked(fd: int, path, what: str = "read") -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = _KIND.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise Refused(f"{shown(path)} is {kind}, not a regular file; mnistcnn will not {what} it", 415)
    return st


def _refusal(path, e: OSError, what: str) -> Refused | None:
    """The policy's own refusals among the errors of an open (None: an ordinary OSError)."""
    if e.errno == errno.ELOOP:
        return Refused(
            f"{shown(path)} is a symbolic link; mnistcnn will not {what} a run folder's file through a link: "
            "remove the link (the file it points to is untouched)"
        )
    if e.errno == errno.ENXIO:  # a socket, or a FIFO without a reader opened for writing
        return Refused(
            f"{shown(path)} is a socket or FIFO, not a regular file; mnistcnn will not {what} it", 415
        )
    return None


def open_fd(path, flags: int = os.O_RDONLY, within=None, follow: bool = True, what: str = "read") -> int:
    """A descriptor of the regular file `path` (resolved inside `within` when given); raises Refused for the
    policy, OSError for the rest (missing, permission)."""
    target = inside(path, within) if within is not None else path
    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as e:
        raise (_refusal(path, e, what) or e) from None
    _checked(fd, path, what)
    return fd


def open_read(path, within=None, cap: int | None = None, follow: bool = True):
    """A binary file object of a regular file, refused when larger than `cap` bytes now."""
    fd = open_fd(path, os.O_RDONLY, within, follow)
    size = os.fstat(fd).st_size
    if cap is not None and size > cap:
        os.close(fd)
        raise too_large(path, size, cap)
    return os.fdopen(fd, "rb")


def read_capped(path, cap: int, within=None) -> bytes:
    """The whole of a small file; one that holds (or grows to) more than `cap` bytes is refused."""
    with open_read(path, within, cap) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise too_large(path, len(data), cap)
    return data


def too_large(path, size: int, cap: int) -> Refused:
    return Refused(
        f"{shown(path)} holds {_size(size)}, more than the {_size(cap)} such a file of mnistcnn ever needs; "
        "it is not one (or is damaged): move it away",
        413,
    )


def _size(n: int) -> str:
    """Binary units as the caps are set (256 MiB); exact bytes below 10 MiB (a cap + 1 byte reads as such)."""
    if n < 10 * MiB:
        return f"{n:,} bytes" if n % MiB else f"{n // MiB} MiB"
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n:,} bytes"  # pragma: no cover - n >= 10 MiB


def open_in_place(path, flags: int, what: str = "write") -> int:
    """A descriptor for changing a file where it lies (a lock, an append): never through a symbolic link, never
    a special file, never a file other hard links share (the change would show through them)."""
    fd = open_fd(path, flags, follow=False, what=what)
    if os.fstat(fd).st_nlink > 1:
        os.close(fd)
        raise Refused(
            f"{shown(path)} has other hard links; mnistcnn will not {what} a file shared with another name: "
            "copy it (cp) to break the link"
        )
    return fd


def no_follow_opener(what: str = "write"):
    """An `opener=` for builtins.open that applies `open_in_place`."""
    return lambda path, flags: open_in_place(path, flags, what)


# C0/C1 controls and DEL, lone surrogates (bytes that are not UTF-8, as os.fsdecode gives them), bidi
# overrides/isolates, line and paragraph separators
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value) -> str:
    """Any name (str, bytes, Path) or text, safe for one terminal line and for UTF-8 (JSON, logs)."""
    if isinstance(value, (bytes, os.PathLike)):
        value = os.fsdecode(value)
    return _UNSAFE.sub(_escape, str(value))
