"""What every command shares: the options that recur, and the one place errors become one line.

Usage: `app = typer.Typer(cls=Group)`; a command raises `MnistcnnError` (or `fail(...)`) and the user sees
`error: ...` and exit code 2; `say(f"wrote {path}")` prints a line whose names are escaped (safeio.shown).
Imports nothing heavy: `mnistcnn --help` stays instant.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

try:  # typer >= 0.22 ships its own copy of click; its commands raise that copy's exceptions
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click

from mnistcnn.errors import MnistcnnError
from mnistcnn.safeio import shown

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder holding MNIST/raw/ (default: $MNISTCNN_DATA_DIR, else ./data)."),
]
Device = Annotated[str, typer.Option(help="auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps.")]
Checkpoint = Annotated[Path, typer.Argument(help="A checkpoint (RUN/last.pt, RUN/best.pt) or a run folder.")]


def fail(message: str) -> typer.Exit:
    """Print `error: message` (control characters and non-UTF-8 bytes escaped: one line, whatever names it
    holds) and return the Exit(2) to raise."""
    typer.echo(f"error: {shown(message)}", err=True)
    return typer.Exit(2)


def say(text: str, err: bool = False) -> None:
    """Print one line of a command's output, escaped as `fail` does (a file name cannot split the line or
    drive the terminal)."""
    typer.echo(shown(text), err=err)


class OutputFailed(BaseException):
    """A write to stdout or stderr failed (a full disk, a closed pipe). A BaseException, as KeyboardInterrupt:
    no `except Exception` on the way (a download's fallback, say) mistakes it for its own failure."""

    def __init__(self, stream: str, error: OSError) -> None:
        super().__init__(stream, error)
        self.stream, self.error = stream, error


class _Guarded(io.RawIOBase):
    """The descriptor under sys.stdout/sys.stderr: a failed write raises OutputFailed once, then the stream
    swallows what follows (so neither the exit's flush nor a later print can fail again)."""

    def __init__(self, fd: int, name: str, closed: bool = False) -> None:
        self.fd, self.name, self.failed, self.closed_at_start = fd, name, False, closed

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data) -> int:
        if self.failed:
            return len(data)
        if self.closed_at_start:
            return self.fail(OSError(errno.EBADF, "the stream is closed"))
        try:
            return os.write(self.fd, data)
        except OSError as e:
            return self.fail(e)

    def fail(self, e: OSError) -> int:
        self.failed = True
        raise OutputFailed(self.name, e) from None


def _guard(name: str) -> tuple[bool, object]:
    """Put a guarded stream in place of sys.<name> (a real descriptor only; a test's capture is left alone);
    returns (whether it did, the stream it replaced)."""
    stream = getattr(sys, name)
    if stream is None:  # started with the descriptor closed (`>&-`): every write is the error EBADF
        fd = 1 if name == "stdout" else 2
        _occupy(fd)  # /dev/null there: no file opened later (a checkpoint!) can take fd 1 or 2 and get output
        raw = _Guarded(fd, name, closed=True)
        setattr(
            sys, name, io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace")
        )
        return True, None
    try:
        fd = stream.fileno()
        stream.flush()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False, stream
    guarded = io.TextIOWrapper(
        io.BufferedWriter(_Guarded(fd, name)),
        encoding=stream.encoding,
        errors="backslashreplace",  # a name that slipped past `shown` is printed escaped, not a crash
        line_buffering=stream.line_buffering,
    )
    setattr(sys, name, guarded)
    return True, stream


def _occupy(fd: int) -> None:
    try:
        os.fstat(fd)
    except OSError:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)


def _output_failed(e: OutputFailed) -> int:
    """The one line for a failed stdout (a closed pipe: none, as `cat` or `ls` do when `head` has read
    enough); exit 2."""
    if e.stream == "stdout" and e.error.errno != errno.EPIPE:
        from mnistcnn.outputs import cause

        full = e.error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        with suppress(OutputFailed):  # stderr may be on the full disk too
            typer.echo(
                f"error: cannot write to standard output: {cause(e.error)}; "
                f"{'free some space or ' if full else ''}send the output elsewhere",
                err=True,
            )
    return 2


def _debug(ctx: typer.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("debug"))


class Group(TyperGroup):
    """The root command group: a MnistcnnError from any command, or a usage mistake click catches, is printed
    as one `error:` line with exit code 2 (the traceback only with --debug)."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except MnistcnnError as e:
            if _debug(ctx):
                raise
            raise fail(str(e)) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        saved = {name: _guard(name) for name in ("stdout", "stderr")}
        try:
            try:
                code = self._main(args, prog_name, complete_var, **extra)
            except OutputFailed as e:  # while printing an error line: stderr itself failed
                code = _output_failed(e)
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except OutputFailed as e:
                code = _output_failed(e)
        finally:
            for name, (installed, stream) in saved.items():
                if installed:
                    with suppress(OutputFailed):  # a closed stream's pending bytes: already reported
                        getattr(sys, name).flush()  # swallowed once failed
                    setattr(sys, name, stream)
        if not standalone_mode:
            return code
        raise SystemExit(code)

    def _main(self, args, prog_name, complete_var, **extra) -> int:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except OutputFailed as e:  # stdout on a full disk, or closed (`mnistcnn predict ... | head -1`)
            code = _output_failed(e)
        except click.NoArgsIsHelpError as e:
            e.show()  # a bare `mnistcnn show`: the help text is the answer
            code = 2
        except click.UsageError as e:  # --batch-size abc, a missing argument, an unknown option
            where = e.ctx.command_path if e.ctx else "mnistcnn"
            fail(f"{e.format_message()} (see {where} --help)")
            code = 2
        except click.ClickException as e:
            fail(e.format_message())
            code = e.exit_code
        except typer.Abort:  # Ctrl-C outside training
            typer.echo("error: aborted", err=True)
            code = 130
        return code if isinstance(code, int) else 0


def sub_app(help: str) -> typer.Typer:
    """A command group under the root (`mnistcnn data ...`, `mnistcnn show ...`)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


Out = Annotated[Path, typer.Option(help="Picture to write (.png, .svg, .pdf, .jpg; no extension: .png).")]
Force = Annotated[
    bool,
    typer.Option("--force", help="Replace an existing file that is not this command's kind of output."),
]


def picture(path: Path, option: str, inputs: list, force: bool, folders: bool = False) -> Path:
    """The picture file a command will write, checked before any work (see outputs.check_output)."""
    from mnistcnn.outputs import PICTURE, check_output

    return check_output(path, PICTURE, option, inputs, force, folders)


show_app = sub_app(
    "The lecture's pictures: filters, feature maps, kernels, activations; for the generative kinds "
    "reconstructions, interpolate, arithmetic, manifold, latent, progress."
)
