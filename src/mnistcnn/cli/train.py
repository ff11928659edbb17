"""`mnistcnn train`: flags → TrainConfig → one call to `mnistcnn.train.train` → the result line.

Usage: `mnistcnn train --config fast` (a shipped recipe: `mnistcnn recipes`), `mnistcnn train --config my.toml`,
`mnistcnn train --resume runs/<time> --epochs 8`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from mnistcnn.cli.common import DataDir, say

Recipe = Annotated[
    str | None,
    typer.Option(
        metavar="NAME|FILE",
        help="A shipped recipe (default, fast, lecture, ...: mnistcnn recipes) or a TOML file of TrainConfig "
        "keys. A recipe's name wins over a file of that name here: write ./NAME for the file.",
    ),
]

Kind = Annotated[str | None, typer.Option(help="mynet (the lecture's classifier), ae, vae, cvae or gan.")]
Latent = Annotated[
    int | None, typer.Option(help="ae, vae, cvae, gan: the latent code's size (default: the kind's).")
]

Resume = Annotated[
    Path | None, typer.Option(help="Continue a run: its folder or checkpoint (--epochs may raise the total).")
]

KeepEpochs = Annotated[
    bool | None,
    typer.Option(
        "--keep-epochs/--no-keep-epochs",
        help="Also keep the weights after every epoch: RUN/epochs/epoch-NNN.pt (~171 KB each for MyNet).",
    ),
]

# The options that are not TrainConfig keys; every other option of `train` is one.
_NOT_CONFIG = ("config", "data_dir", "run_dir", "resume")


def train(
    ctx: typer.Context,
    config: Recipe = None,
    model: Kind = None,
    latent: Latent = None,
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
    keep_epochs: KeepEpochs = None,
    data_dir: DataDir = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run folder to create (default runs/<time>).")] = None,
    resume: Resume = None,
) -> None:
    """Train MyNet (or --model ae|vae|cvae|gan): a run folder (config, metrics, checkpoints, loss plot). Ctrl-C saves."""
    from mnistcnn.errors import Interrupted
    from mnistcnn.report import reporter_for_stdout
    from mnistcnn.resume import plan_run
    from mnistcnn.train import train as run_training

    flags = {k: v for k, v in ctx.params.items() if k not in _NOT_CONFIG}
    cfg, run_dir, ckpt = plan_run(config, flags, run_dir, resume)
    recipe = _started_from(config)
    start = time.perf_counter()
    try:
        result = run_training(cfg, data_dir, run_dir, reporter_for_stdout(), resume=ckpt, recipe=recipe)
    except Interrupted as e:
        raise _interrupted(e, data_dir) from None
    if result["is_main"]:
        _print_result(result, time.perf_counter() - start, data_dir)
        _print_kept(run_dir, cfg.keep_epochs)


def _print_kept(run_dir: Path, keep_epochs: bool) -> None:
    from mnistcnn.rundir import snapshots

    kept = [path for _, path in snapshots(run_dir)] if keep_epochs else []
    if kept:
        say(f"kept each epoch's weights: {kept[0]} … {kept[-1].name} (mnistcnn eval {kept[-1]})")


def _started_from(config: str | None) -> str | None:
    """What config.json records as the run's recipe; a note when a file here has the recipe's name."""
    from mnistcnn import recipes

    if config is None:
        return None
    if recipes.shadowed(config):
        typer.echo(
            f"note: --config {config} is the shipped recipe; for the file here write --config ./{config}",
            err=True,
        )
    return recipes.source(config).label


def _interrupted(e, data_dir) -> typer.Exit:
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        last, data = Path(e.run_dir) / "last.pt", f" --data-dir {data_dir}" if data_dir else ""
        if e.finished:  # the signal came during the final evaluation, save or plot
            say(
                f"interrupted after the last epoch: {last} holds the trained model; "
                f"its test accuracy: mnistcnn eval {last}{data}",
                err=True,
            )
        else:
            say(
                f"interrupted: saved {last}; continue with: mnistcnn train --resume {e.run_dir}{data}",
                err=True,
            )
    return typer.Exit(128 + e.signum)


def _print_result(result: dict, seconds: float, data_dir) -> None:
    run = Path(result["run_dir"])
    data = f" --data-dir {data_dir}" if data_dir else ""
    where = f"{seconds:.1f} s on {result['device']} ({result['precision']})"
    if result["model"] != "mynet":
        return _print_generative(result, run, data, where)
    say(
        f"test accuracy {100 * result['test_acc']:.2f} % (loss {result['test_loss']:.4f}) on {result['n']} "
        f"images; {where}"
    )
    say(f"run folder: {run}")
    say(f"wrote: {run / 'last.pt'}, {run / 'best.pt'}, {run / 'metrics.jsonl'}, {run / 'loss.png'}")
    say("next:")
    say(f"  mnistcnn eval {run / 'last.pt'}{data}")
    say(f"  mnistcnn failures {run / 'last.pt'}{data} --out failures.png")
    say(f"  mnistcnn predict {run / 'last.pt'} my_digit.png --show-input seen.png")


def _print_generative(result: dict, run: Path, data: str, where: str) -> None:
    kind = result["model"]
    if "test_kl" in result:
        figure = f"test neg-ELBO {result['test_loss']:.2f} nats (reconstruction {result['test_recon']:.2f} + KL {result['test_kl']:.2f})"
    elif kind == "ae":
        figure = f"test reconstruction loss {result['test_loss']:.2f} nats"
    else:
        figure = f"discriminator on test images {100 * result['test_d_real']:.1f} % real, on samples {100 * result['test_d_fake']:.1f} %"
    say(f"{kind}: {figure} on {result['n']} images; {where}")
    say(f"run folder: {run}")
    extra = f", {run / 'progress'}/" if kind == "gan" else ""
    say(f"wrote: {run / 'last.pt'}, {run / 'best.pt'}, {run / 'metrics.jsonl'}, {run / 'loss.png'}{extra}")
    say("next:")
    say(f"  mnistcnn eval {run / 'last.pt'}{data}   (judged by the newest MyNet run; --judge to choose)")
    if kind != "ae":
        digit = " --digit 7" if kind in ("cvae", "gan") else ""
        say(f"  mnistcnn generate {run / 'last.pt'}{digit} --out samples.png")
    if kind != "gan":
        say(f"  mnistcnn show reconstructions {run / 'last.pt'}{data} --out reconstructions.png")
    else:
        say(f"  mnistcnn show progress {run} --out progress.png")
