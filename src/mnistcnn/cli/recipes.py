"""`mnistcnn recipes [NAME]`: the shipped recipes listed, or one printed verbatim (to copy and change).

Usage: `mnistcnn recipes`, `mnistcnn recipes fast`, `mnistcnn recipes fast > my.toml`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def recipes(
    name: Annotated[
        str | None, typer.Argument(help="A recipe to print: its TOML file, verbatim (redirect it to copy).")
    ] = None,
) -> None:
    """List the shipped recipes (run one with mnistcnn train --config NAME), or print one to copy and change:
    mnistcnn recipes fast > my.toml."""
    from mnistcnn import recipes as shipped

    if name is not None:  # a failing output (`> my.toml` on a full disk) is the CLI boundary's one line
        sys.stdout.write(shipped.text(name))
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
