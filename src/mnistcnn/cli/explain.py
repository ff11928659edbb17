"""The commands that look at a trained model: eval, plot-loss, predict, failures, show
filters|features|kernels|activations, summary, export. Imports nothing heavy at module level.

Usage: `mnistcnn eval runs/R/last.pt`, `mnistcnn predict runs/R/last.pt seven.png`, `mnistcnn show filters runs/R`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mnistcnn.cli.common import Checkpoint, DataDir, Device, Force, Out, fail, say, show_app
from mnistcnn.cli.common import picture as _picture
from mnistcnn.outputs import json_safe
from mnistcnn.safeio import shown

Index = Annotated[int | None, typer.Option(help="Use test-set image N instead of an IMAGE file.")]


def eval_(
    checkpoint: Checkpoint,
    data_dir: DataDir = None,
    device: Device = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Images per forward pass (default: the run's eval_batch_size, as train evaluated)."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    confusion: Annotated[
        Path | None,
        typer.Option(help="Also draw the 10×10 confusion matrix into this PNG (and add it to --json)."),
    ] = None,
    judge: Annotated[
        Path | None,
        typer.Option(
            help="Generative kinds: the MyNet checkpoint that judges (default: the newest MyNet run)."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="vae, cvae: importance samples per image for the NLL.")] = 200,
    nll_images: Annotated[
        int,
        typer.Option(
            help="vae, cvae: test images for the NLL (10000: all; k=200 on all takes minutes on a CPU)."
        ),
    ] = 2000,
    force: Force = False,
) -> None:
    """Test accuracy, average loss and per-class accuracy of a checkpoint; for ae/vae/cvae/gan their losses,
    NLL and the judge's figures (FD in MyNet's feature space, class fidelity)."""
    from mnistcnn.cli.generative import generative_checkpoint
    from mnistcnn.evaluate import evaluate_checkpoint

    if confusion is not None:
        confusion = _picture(confusion, "--confusion", [checkpoint], force)
    loaded = generative_checkpoint(checkpoint, device, confusion is not None or batch_size is not None, judge)
    if loaded is not None:
        from mnistcnn.cli.generative import eval_generative

        return eval_generative(checkpoint, loaded, data_dir, device, judge, k, nll_images, json_out)
    log = (lambda m: say(m, err=True)) if json_out else say
    m = evaluate_checkpoint(checkpoint, data_dir, device, batch_size, log=log)
    if confusion is not None:
        from mnistcnn.views import confusion_png

        log(f"wrote {confusion_png(m['confusion'], confusion)}")
    if json_out:
        keys = ("accuracy", "loss", "per_class", "n") + (("confusion",) if confusion else ())
        typer.echo(json.dumps(json_safe({k: m[k] for k in keys}), allow_nan=False))
        return
    _print_eval(m, checkpoint)


def _print_eval(m: dict, checkpoint: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"per-class accuracy of {shown(checkpoint)}", highlight=False, markup=False, soft_wrap=True)
    table = Table()
    for name in ("digit", "images", "correct", "accuracy"):
        table.add_column(name, justify="right")
    for digit in range(10):
        row = m["confusion"][digit]
        table.add_row(str(digit), str(sum(row)), str(row[digit]), f"{100 * m['per_class'][digit]:.2f} %")
    console.print(table)
    console.print(
        f"test accuracy {100 * m['accuracy']:.2f} % ({m['n']} images), average loss {m['loss']:.4f}"
    )


def plot_loss(
    target: Annotated[
        Path | None, typer.Argument(help="Run folder or metrics.jsonl (default: the newest run in runs/).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: loss.png beside metrics.jsonl).")
    ] = None,
    force: Force = False,
) -> None:
    """Plot the batch loss (with a moving average) and the accuracy per epoch."""
    from mnistcnn.plots import plot_loss as draw
    from mnistcnn.plots import resolve_metrics

    metrics, within = resolve_metrics(target)
    out = _picture(out or metrics.parent / "loss.png", "--out", [metrics], force)
    say(f"wrote {draw(metrics, out, log=say, within=within)}")


def predict(
    checkpoint: Checkpoint,
    images: Annotated[
        list[Path], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, WebP, TIFF) or folders.")
    ],
    multi: Annotated[
        bool, typer.Option("--multi", help="Each image holds a number of 1-8 digits written left to right.")
    ] = False,
    top_k: Annotated[int, typer.Option(help="How many classes to show per image (without --multi).")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of text.")] = False,
    show_input: Annotated[
        Path | None, typer.Option(help="Save each image, the ink and digits found, and what the network saw.")
    ] = None,
    device: Device = "cpu",
    force: Force = False,
) -> None:
    """Read your own digit images (drawings or phone photos) and say which digit or number each one is."""
    from mnistcnn.checkpoint import load_model
    from mnistcnn.images import expand

    if not 1 <= top_k <= 10:
        raise fail(f"--top-k must be between 1 and 10; got {top_k}")
    if show_input is not None:
        show_input = _picture(show_input, "--show-input", [checkpoint, *images], force, folders=True)
    ckpt, model = load_model(checkpoint, device, command="predict")
    paths = expand(images)
    if show_input is not None and len(paths) > SHOW_MOST:
        raise fail(f"--show-input draws at most {SHOW_MOST} images; got {len(paths)} (pass fewer)")
    rows, drawn = [], []
    for path, result, row in _read_each(paths, ckpt, model, multi, show_input is not None):
        if json_out:
            keep = ("prediction", "probabilities") + (("text", "digits") if multi else ())
            rows.append({"path": str(path), **{k: result[k] for k in keep}})
        else:
            say(_said(path, result, multi, top_k))
        drawn.append((row, result))
    if json_out:
        typer.echo(json.dumps(json_safe(rows), allow_nan=False))
    if show_input is not None:
        from mnistcnn.views import inputs_png

        inputs_png([r for r, _ in drawn], [r for _, r in drawn], [shown(p) for p in paths], show_input)
        say(f"wrote {show_input}", err=json_out)


SHOW_MOST = 100  # --show-input's figure: 3.2 inches a row; past this it is a poster, not a picture


def _read_each(paths, ckpt, model, multi: bool, keep_rows: bool):
    """One image at a time — decode, read, hand back, free — so memory holds one picture whatever the folder
    holds: (path, the reading, the small row --show-input draws or None)."""
    from mnistcnn.images import extract, load_picture
    from mnistcnn.predict import read_extraction

    for path in paths:
        picture = load_picture(path)
        found = extract(picture, multi, str(path))
        result = read_extraction(ckpt, model, found, multi)
        if keep_rows:
            from mnistcnn.views import input_row

            yield path, result, input_row(picture, found)
        else:
            yield path, result, None
        del picture, found


def _said(path, result: dict, multi: bool, top_k: int) -> str:
    if multi:
        each = ", ".join(f"{d['prediction']} {max(d['probabilities']):.1%}" for d in result["digits"])
        return f"{path}: {result['text']} ({each})"
    q = result["probabilities"]
    best = sorted(range(10), key=lambda d: -q[d])[:top_k]
    return f"{path}: " + ", ".join(f"{d} ({q[d]:.1%})" for d in best)


def failures(
    checkpoint: Checkpoint,
    out: Out = Path("failures.png"),
    n: Annotated[int, typer.Option("--n", help="How many misclassified digits to show.")] = 36,
    data_dir: DataDir = None,
    device: Device = "auto",
    force: Force = False,
) -> None:
    """A grid of misclassified test digits, most confident mistakes first ("Some Failures")."""
    from mnistcnn.checkpoint import load_model
    from mnistcnn.explain import predict_test_set
    from mnistcnn.views import failures_png

    if n <= 0:
        raise fail(f"--n must be > 0; got {n}")
    out = _picture(out, "--out", [checkpoint], force)
    ckpt, model = load_model(checkpoint, device, command="failures")
    p = predict_test_set(ckpt, model, data_dir, log=say)
    wrong = p["pred"] != p["labels"]
    if not wrong.any():
        say("no misclassified test digit: nothing to draw")
        return
    failures_png(p["images"][wrong], p["labels"][wrong], p["pred"][wrong], p["conf"][wrong], out, n)
    say(f"{int(wrong.sum())} of {len(wrong)} test digits misclassified; wrote {out}")


@show_app.command("filters")
def show_filters(checkpoint: Checkpoint, out: Out = Path("filters.png"), force: Force = False) -> None:
    """conv1's 32 learned 3×3 kernels on one shared colour scale."""
    from mnistcnn.checkpoint import load_model
    from mnistcnn.views import filters_png

    out = _picture(out, "--out", [checkpoint], force)
    _, model = load_model(checkpoint, command="show filters")
    say(f"wrote {filters_png(model.conv1.weight.detach().numpy(), out)}")


@show_app.command("features")
def show_features(
    checkpoint: Checkpoint,
    image: Annotated[Path | None, typer.Argument(help="A digit image (or use --index).")] = None,
    index: Index = None,
    out: Out = Path("features.png"),
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """The input and its feature maps after conv1 (32) and conv2 (64)."""
    from mnistcnn.checkpoint import load_model
    from mnistcnn.explain import digit_from, feature_maps
    from mnistcnn.views import features_png

    out = _picture(out, "--out", [checkpoint, image], force)
    ckpt, model = load_model(checkpoint, command="show features")
    digit, label = digit_from(index, image, data_dir, say)
    say(f"wrote {features_png(digit, *feature_maps(ckpt, model, digit), out, label)}")


@show_app.command("kernels")
def show_kernels(
    image: Annotated[Path | None, typer.Argument(help="A digit image (or use --index).")] = None,
    index: Index = None,
    out: Out = Path("kernels.png"),
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """The lecture's identity, blur and edge-detection kernels applied to a digit."""
    from mnistcnn.explain import digit_from
    from mnistcnn.views import kernels_png

    out = _picture(out, "--out", [image], force)
    digit, _ = digit_from(index, image, data_dir, say)
    say(f"wrote {kernels_png(digit, out)}")


@show_app.command("activations")
def show_activations(out: Out = Path("activations.png"), force: Force = False) -> None:
    """Step, sigmoid (slopes 0.5/1/2), tanh and ReLU on one figure."""
    from mnistcnn.views import activations_png

    out = _picture(out, "--out", [], force)
    say(f"wrote {activations_png(out)}")


def summary(
    checkpoint: Annotated[Path | None, typer.Argument(help="A checkpoint (default: a fresh MyNet).")] = None,
    model_kind: Annotated[
        str | None, typer.Option("--model", help="A fresh model of this kind: mynet, ae, vae, cvae or gan.")
    ] = None,
) -> None:
    """Per layer: output shape and parameters; and the lecture's classic-vs-CNN comparison."""
    from rich.console import Console
    from rich.table import Table

    from mnistcnn import kinds
    from mnistcnn.checkpoint import load_model
    from mnistcnn.explain import summary as layer_summary

    if checkpoint is not None and model_kind is not None:
        raise fail("give a checkpoint or --model KIND, not both")
    if model_kind is not None and model_kind not in kinds.NAMES:
        raise fail(f"--model must be one of {', '.join(kinds.NAMES)}; got {model_kind!r}")
    ckpt, model = load_model(checkpoint, needs=None) if checkpoint else (None, None)
    kind = kinds.of_checkpoint(ckpt) if ckpt else kinds.get(model_kind or "mynet")
    if kind.name != "mynet":
        return _summary_generative(kind, model)
    model = model if checkpoint else None
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


def _summary_generative(kind, model) -> None:
    from rich.console import Console
    from rich.table import Table

    from mnistcnn.generative.layers import layers

    model = model.cpu() if model is not None else kind.build(kind.args_of({}))
    console = Console()
    grand = 0
    for part, rows, total in layers(kind, model):
        table = Table(title=f"{kind.name}: {part}")
        for name, justify in (("layer", "left"), ("output shape", "right"), ("parameters", "right")):
            table.add_column(name, justify=justify)
        for name, shape, params in rows:
            table.add_row(name, " × ".join(map(str, shape)), f"{params:,}" if params else "")
        table.add_row("total", "", f"{total:,}")
        console.print(table)
        grand += total
    note = (
        " (and as many again in the generator's moving average, which samples)" if kind.name == "gan" else ""
    )
    console.print(
        f"{kind.what}: {grand:,} trained parameters{note}; MyNet, the judge, has 41,866", highlight=False
    )


def export(
    checkpoint: Checkpoint,
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    out: Annotated[
        Path | None, typer.Option(help="File to write (default mynet.onnx, or mynet.pt for torchscript).")
    ] = None,
    force: Force = False,
) -> None:
    """Export the model (input: normalised (B, 1, 28, 28) images; see the printed mean/std)."""
    from mnistcnn.checkpoint import load_model, normalization
    from mnistcnn.explain import export as do_export
    from mnistcnn.outputs import ONNX, TORCHSCRIPT, check_output

    kind = {"onnx": ONNX, "torchscript": TORCHSCRIPT}.get(format)
    if kind is None:
        raise fail(f"--format must be onnx or torchscript; got {format!r}")
    out = check_output(out or Path("mynet" + kind.suffixes[0]), kind, "--out", [checkpoint], force)
    ckpt, model = load_model(checkpoint, command="export")
    mean, std = normalization(ckpt)
    say(f"wrote {do_export(ckpt, model, format, out)} (input = (pixels/255 - {mean:g}) / {std:g})")
