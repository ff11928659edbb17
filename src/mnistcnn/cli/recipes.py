"""`mnistcnn recipes [NAME]`: the shipped recipes listed, or one printed verbatim (to copy and change).

Usage: `mnistcnn recipes`, `mnistcnn recipes fast`, `mnistcnn recipes fast > my.toml`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated

import typer

from mnistcnn.errors import MnistcnnError


def recipes(
    name: Annotated[
        str | None, typer.Argument(help="A recipe to print: its TOML file, verbatim (redirect it to copy).")
    ] = None,
) -> None:
    """List the shipped recipes (run one with mnistcnn train --config NAME), or print one to copy and change:
    mnistcnn recipes fast > my.toml."""
    from mnistcnn import recipes as shipped

    if name is not None:
        _write(shipped.text(name), f"recipe {name}")
        return
    from mnistcnn.config import catalog

    rows = catalog()
    width = max((len(r["name"]) for r in rows), default=len("recipe"))
    typer.echo(f"{'recipe':<{width}}  model  epochs  batch  why")
    for r in rows:
        typer.echo(
            f"{r['name']:<{width}}  {r['model']:<5}  {r['epochs']:>6}  {r['batch_size']:>5}  {r['why']}"
        )
        figures = [f"measured on {m['machine']}: {m['figures']}" for m in r["measured"]]
        for line in figures or ["not measured yet"]:
            typer.echo(f"{'':<{width}}    {line}")
    typer.echo(
        "print one (to copy it): mnistcnn recipes NAME > my.toml; run one: mnistcnn train --config NAME"
    )


def _write(text: str, what: str) -> None:
    """`text` to stdout; a failing output (`> my.toml` on a full disk) is one line, not a traceback."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as e:
        with contextlib.suppress(OSError, ValueError):  # nothing more reaches it, not even the flush at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise MnistcnnError(
            f"cannot write {what} to the output: {e.strerror or e}; what it holds is incomplete"
        ) from None
