"""What every command shares: the options that recur, and the one place errors become one line.

Usage: `app = typer.Typer(cls=Group)`; a command raises `MnistcnnError` (or `fail(...)`) and the user sees
`error: ...` and exit code 2. Imports nothing heavy: `mnistcnn --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

try:  # typer >= 0.22 ships its own copy of click; its commands raise that copy's exceptions
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click

from mnistcnn.errors import MnistcnnError

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder holding MNIST/raw/ (default: $MNISTCNN_DATA_DIR, else ./data)."),
]
Device = Annotated[str, typer.Option(help="auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps.")]
Checkpoint = Annotated[Path, typer.Argument(help="A checkpoint (RUN/last.pt, RUN/best.pt) or a run folder.")]


def fail(message: str) -> typer.Exit:
    """Print `error: message` and return the Exit(2) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


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
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.NoArgsIsHelpError as e:
            e.show()  # a bare `mnistcnn show`: the help text is the answer
            code = 2
        except click.UsageError as e:  # --batch-size abc, a missing argument, an unknown option
            where = e.ctx.command_path if e.ctx else "mnistcnn"
            typer.echo(f"error: {e.format_message()} (see {where} --help)", err=True)
            code = 2
        except click.ClickException as e:
            typer.echo(f"error: {e.format_message()}", err=True)
            code = e.exit_code
        except typer.Abort:  # Ctrl-C outside training
            typer.echo("error: aborted", err=True)
            code = 130
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        raise SystemExit(code)


def sub_app(help: str) -> typer.Typer:
    """A command group under the root (`mnistcnn data ...`, `mnistcnn show ...`)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)
