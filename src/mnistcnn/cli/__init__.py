"""The mnistcnn command line: parse, build the config, call one library function, print the result.

Usage: `mnistcnn train --epochs 4`, `mnistcnn eval runs/<time>/last.pt`, `mnistcnn --help`.
One module per command group (train, explain, data, serve); torch, torchvision and matplotlib are imported
inside the commands so that --help stays instant. Errors become one line in `common.Group`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mnistcnn import __version__
from mnistcnn.cli import data, explain, generative, recipes, serve, train
from mnistcnn.cli.common import Group

app = typer.Typer(
    cls=Group,
    help="Train, evaluate and explain the lecture's small CNN (MyNet) on MNIST.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich imports ~0.15 s of modules (--help stays instant)
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnistcnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}
    from mnistcnn.hostalloc import skip_exit_collection, tune_host_allocator

    tune_host_allocator()  # CPU steps reuse freed memory instead of page-faulting it in again (~1.4x)
    skip_exit_collection()  # ~2 s less at exit after torch is imported


app.command()(train.train)
app.command()(recipes.recipes)
app.command("eval")(explain.eval_)
app.command("plot-loss")(explain.plot_loss)
app.command()(explain.predict)
app.command()(explain.failures)
app.command()(generative.generate)
app.add_typer(explain.show_app, name="show")
app.command()(explain.summary)
app.command()(explain.export)
app.add_typer(data.data_app, name="data")
app.command()(serve.serve)
