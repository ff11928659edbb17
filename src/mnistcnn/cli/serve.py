"""`mnistcnn serve`: the lecture in a browser — draw or photograph a digit, the model's views, live run curves.

Usage: `mnistcnn serve` (the newest run under runs/), `mnistcnn serve runs/R/best.pt --port 8080`.
fastapi, uvicorn and torch are imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnistcnn.cli.common import DataDir, Device, say


def serve(
    target: Annotated[
        Path | None,
        typer.Argument(
            help="A checkpoint, a run folder or a runs folder (default: runs/, serving its newest run).",
            show_default=False,
            metavar="[CHECKPOINT|RUN_DIR|RUNS_ROOT]",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback is reachable by others.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    device: Device = "auto",
    data_dir: DataDir = None,
    allow_train: Annotated[
        bool,
        typer.Option(
            "--allow-train",
            help="Let the page start training when --host is not loopback (on loopback it always may).",
        ),
    ] = False,
) -> None:
    """Serve a local web page: draw or photograph a digit and watch MyNet read it; the model's summary, kernels,
    test accuracy, confusion and failures; the runs with their loss curves, live while they train; generated
    digits, the test set's map, mistakes, epochs; training started from the page. Ctrl-C stops (a run started
    from the page saves last.pt first)."""
    from mnistcnn.serve.server import serve as run_server
    from mnistcnn.serve.server import still_evaluating

    run_server(target, host, port, device, data_dir, say, lambda m: say(m, err=True), allow_train)
    if still_evaluating():  # stopped during a first evaluation: nothing else is left to do or to write
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
