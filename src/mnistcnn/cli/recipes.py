"""`mnistcnn recipes [NAME]`: the shipped recipes listed, or one printed verbatim (to copy and change).

Usage: `mnistcnn recipes`, `mnistcnn recipes fast`, `mnistcnn recipes fast > my.toml`.
"""

from __future__ import annotations

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

    if name is not None:
        typer.echo(shipped.text(name), nl=False)
        return
    from mnistcnn.config import catalog

    rows = catalog()
    width = max((len(r["name"]) for r in rows), default=len("recipe"))
    typer.echo(f"{'recipe':<{width}}  model  epochs  batch  why")
    for r in rows:
        typer.echo(
            f"{r['name']:<{width}}  {r['model']:<5}  {r['epochs']:>6}  {r['batch_size']:>5}  {r['why']}"
        )
        for m in r["measured"] or [{"machine": "", "figures": ""}]:
            what = f"measured on {m['machine']}: {m['figures']}" if m["machine"] else "not measured yet"
            typer.echo(f"{'':<{width}}    {what}")
    typer.echo(
        "print one (to copy it): mnistcnn recipes NAME > my.toml; run one: mnistcnn train --config NAME"
    )
