"""The generative commands: `mnistcnn generate`, `eval` of an ae/vae/cvae/gan checkpoint (with the judge), and
the pictures under `mnistcnn show` (reconstructions, interpolate, arithmetic, manifold, latent, progress).

Usage: `mnistcnn generate runs/gan --digit 7 --n 16 --out sevens.png`; `mnistcnn generate runs/cvae --style my7.jpg
--out mine.png`; `mnistcnn eval runs/vae --judge runs/mynet/last.pt`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mnistcnn.cli.common import Checkpoint, Device, fail, say
from mnistcnn.outputs import json_safe
from mnistcnn.safeio import shown

MOST_SAMPLES = 100_000  # 78 MB of uint8 digits: more is a mistake, not a wish
Seed = Annotated[int, typer.Option(help="Seeds the noise: the same seed draws the same digits.")]


def generate(
    checkpoint: Checkpoint,
    out: Annotated[
        Path, typer.Option(help="Where to write: .png (a grid) or .npy (uint8 (N, 28, 28), ink 255 on 0).")
    ],
    digit: Annotated[int | None, typer.Option(help="Draw only this digit (cvae, gan).")] = None,
    n: Annotated[
        int, typer.Option("--n", help="How many digits (a --style writes the ten digits 0-9).")
    ] = 64,
    seed: Seed = 0,
    style: Annotated[
        Path | None,
        typer.Option(
            help="cvae: a picture of one digit (a drawing or a phone photo); writes 0-9 in its style."
        ),
    ] = None,
    device: Device = "cpu",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file of another kind.")] = False,
) -> None:
    """Draw new digits from a vae, cvae or gan checkpoint; --style: your handwriting for every digit (cvae)."""
    from mnistcnn import kinds
    from mnistcnn.checkpoint import load_model
    from mnistcnn.outputs import DIGITS, check_output, write_bytes

    if digit is not None and not 0 <= digit <= 9:
        raise fail(f"--digit must be 0..9; got {digit}")
    if not 1 <= n <= MOST_SAMPLES:
        raise fail(f"--n must be 1..{MOST_SAMPLES:,}; got {n}")
    if style is not None and digit is not None:
        raise fail("--style writes all ten digits; drop --digit")
    if seed < 0 or seed >= 2**63:
        raise fail(f"--seed must be 0..2^63-1; got {seed}")
    out = check_output(out, DIGITS, "--out", [checkpoint, style], force)
    needs = "conditional" if digit is not None else "samples"
    ckpt, module = load_model(
        checkpoint, device, needs=needs, command="generate" + (" --digit" if digit is not None else "")
    )
    kind = kinds.of_checkpoint(ckpt)
    from mnistcnn.generative import sample

    if style is not None:
        if kind.name != "cvae":
            raise fail(
                f"{shown(checkpoint)} holds {kind.what} ({kind.name}); --style needs a cvae checkpoint"
            )
        digits = sample.in_style(module, _one_digit(style))
    else:
        digits = sample.draw(kind, module, n, seed, digit)
    payload = sample.npy_bytes(digits) if out.suffix.lower() == ".npy" else sample.png_grid(digits)
    write_bytes(out, payload)
    what = (
        "the ten digits 0-9 in its style"
        if style is not None
        else f"{len(digits)} digit{'s' * (len(digits) > 1)}"
    )
    say(f"wrote {out} ({what})")


def _one_digit(path: Path):
    """A picture of one digit → 28×28 in [0, 1], through predict's photo pipeline (images.extract)."""
    from mnistcnn.images import extract, load_picture

    return extract(load_picture(path), False, str(path)).digits[0]


def generative_checkpoint(path: Path, device: str, mynet_options: bool, judge):
    """For `eval`: (checkpoint, model) when `path` holds a generative kind, None for MyNet; the options that
    belong to the other kind are one line."""
    from mnistcnn import checkpoint, kinds
    from mnistcnn.engine import resolve_device

    dev = resolve_device(device)
    ckpt = checkpoint.load(path)
    if kinds.of_checkpoint(ckpt).name == "mynet":
        if judge is not None:
            raise fail("--judge is for generative checkpoints (ae, vae, cvae, gan); this one holds MyNet")
        return None
    if mynet_options:
        raise fail("--confusion and --batch-size are for MyNet checkpoints")
    return ckpt, checkpoint.model_from_checkpoint(ckpt, path).to(dev)


def eval_generative(checkpoint: Path, ckpt_model, data_dir, device, judge, k, nll_images, json_out) -> None:
    """`mnistcnn eval` of an ae, vae, cvae or gan checkpoint (see generative.evaluation)."""
    from mnistcnn.generative.evaluation import evaluate_checkpoint
    from mnistcnn.generative.judge import newest_judge

    if not 1 <= k <= 10_000:
        raise fail(f"--k must be 1..10000; got {k}")
    if nll_images <= 0:
        raise fail(f"--nll-images must be > 0; got {nll_images}")
    log = (lambda m: say(m, err=True)) if json_out else say
    if judge is None:
        judge = newest_judge()
        log(f"judge: {judge} (the newest MyNet run under runs/; --judge to choose)")
    m = evaluate_checkpoint(checkpoint, data_dir, device, judge, k, nll_images, log, ckpt_model)
    if json_out:
        typer.echo(json.dumps(json_safe(m), allow_nan=False))
        return
    for line in describe(m, checkpoint):
        say(line)


def describe(m: dict, checkpoint) -> list[str]:
    """The eval figures of a generative model in words, one line each."""
    lines = [f"{m['kind']} {shown(checkpoint)} on {m['n']:,} test images:"]
    if "neg_elbo" in m:
        lines.append(
            f"  neg-ELBO {m['neg_elbo']:.2f} nats per image (reconstruction {m['recon']:.2f} + KL {m['kl']:.2f})"
        )
        lines.append(
            f"  NLL {m['nll']:.2f} nats (importance-weighted, k = {m['nll_k']}, {m['nll_images']:,} images, binarized)"
        )
    elif m["kind"] == "ae":
        lines.append(f"  reconstruction loss {m['loss']:.2f} nats per image (BCE, summed over 784 pixels)")
    else:
        lines.append(
            f"  discriminator: {100 * m['d_real']:.1f} % real on test images, {100 * m['d_fake']:.1f} % on samples"
        )
    if "judge" in m:
        lines.append(f"judge {shown(m['judge'])} ({100 * m['judge_test_accuracy']:.2f} % on the test set):")
        if "recon_accuracy" in m:
            lines.append(f"  reads {100 * m['recon_accuracy']:.2f} % of the reconstructions as their digit")
        if "fd" in m:
            ratio = m["fd"] / m["fd_floor"] if m["fd_floor"] > 0 else float("inf")
            lines.append(
                f"  FD {m['fd']:.2f} in MyNet's 2304-d feature space (floor, real train vs test: "
                f"{m['fd_floor']:.2f}; {ratio:.1f}× the floor); mean confidence {100 * m['judge_confidence']:.1f} %"
            )
        if "class_fidelity" in m:
            lines.append(
                f"  class fidelity {100 * m['class_fidelity']:.2f} % (samples read as the digit asked for)"
            )
    return lines


# --- pictures: mnistcnn show reconstructions|interpolate|arithmetic|manifold|latent|progress ---

from mnistcnn.cli.common import DataDir, Force, Out, show_app  # noqa: E402
from mnistcnn.cli.common import picture as _picture  # noqa: E402


def _model_and_test_set(checkpoint: Path, needs: str, command: str, data_dir, device: str = "cpu"):
    from mnistcnn import kinds
    from mnistcnn.checkpoint import load_model
    from mnistcnn.data import read_test_set

    ckpt, module = load_model(checkpoint, device, needs=needs, command=command)
    images, labels = read_test_set(data_dir, say)
    return kinds.of_checkpoint(ckpt), module, images.numpy(), labels.numpy()


def _index(i: int, what: str = "--index") -> int:
    if not 0 <= i < 10_000:
        raise fail(f"{what} must be a test-set image 0..9999; got {i}")
    return i


@show_app.command("reconstructions")
def show_reconstructions(
    checkpoint: Checkpoint,
    n: Annotated[int, typer.Option("--n", help="How many test digits (1-20).")] = 12,
    index: Annotated[int, typer.Option(help="The first test-set image.")] = 0,
    out: Out = Path("reconstructions.png"),
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """Test digits above what an ae, vae or cvae gives back for them."""
    from mnistcnn.generative import pictures

    if not 1 <= n <= 20:
        raise fail(f"--n must be 1..20; got {n}")
    _index(index)
    out = _picture(out, "--out", [checkpoint], force)
    kind, module, images, labels = _model_and_test_set(
        checkpoint, "autoencoder", "show reconstructions", data_dir
    )
    sl = slice(index, min(index + n, len(images)))
    rows = pictures.reconstructions(kind, module, images[sl], labels[sl])
    say(f"wrote {pictures.rows_png(rows, out, f'{kind.name}: test digits and their reconstructions')}")


@show_app.command("interpolate")
def show_interpolate(
    checkpoint: Checkpoint,
    image_a: Annotated[Path | None, typer.Argument(help="A picture of the first digit (or --index).")] = None,
    image_b: Annotated[Path | None, typer.Argument(help="A picture of the second digit.")] = None,
    index: Annotated[
        tuple[int, int] | None, typer.Option(help="Two test-set images I J instead of pictures.")
    ] = None,
    digits: Annotated[tuple[int, int], typer.Option(help="gan: the digits A B to morph between.")] = (1, 7),
    steps: Annotated[int, typer.Option(help="Pictures along the way (3-20).")] = 10,
    seed: Seed = 0,
    out: Out = Path("interpolate.png"),
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """The decoded path between two digits' codes (beside the pixels' cross-fade); a GAN: between two noise
    vectors and between two digits."""
    from mnistcnn.generative import pictures

    if not 3 <= steps <= 20:
        raise fail(f"--steps must be 3..20; got {steps}")
    if any(not 0 <= d <= 9 for d in digits):
        raise fail(f"--digits must be two digits 0..9; got {digits[0]} {digits[1]}")
    if (image_a is None) != (image_b is None):
        raise fail("give two pictures, or --index I J")
    if image_a is not None and index is not None:
        raise fail("give two pictures or --index I J, not both")
    out = _picture(out, "--out", [checkpoint, image_a, image_b], force)
    kind, module, images, labels = _model_and_test_set(checkpoint, "latent", "show interpolate", data_dir)
    if kind.family == "generator":
        rows = pictures.interpolate(kind, module, None, None, digits, steps, seed)
    else:
        if image_a is not None:
            a, b = (_as_uint8(_one_digit(p)) for p in (image_a, image_b))
            la = lb = None  # a cvae reads them
        else:
            i, j = index if index is not None else (0, 1)
            a, b, la, lb = images[_index(i)], images[_index(j)], int(labels[i]), int(labels[j])
        rows = pictures.interpolate(kind, module, a, b, (la, lb), steps)
    say(f"wrote {pictures.rows_png(rows, out, f'{kind.name}: interpolation')}")


def _as_uint8(gray):
    import numpy as np

    return (np.asarray(gray) * 255).round().astype(np.uint8)


@show_app.command("arithmetic")
def show_arithmetic(
    checkpoint: Checkpoint,
    index: Annotated[int, typer.Option(help="The test-set digit whose style is moved onto the others.")] = 0,
    seed: Seed = 0,
    out: Out = Path("arithmetic.png"),
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """The lecture's latent arithmetic: a digit's style moved onto every digit, and thick − thin added to digits."""
    from mnistcnn.generative import pictures

    _index(index)
    out = _picture(out, "--out", [checkpoint], force)
    kind, module, images, labels = _model_and_test_set(checkpoint, "latent", "show arithmetic", data_dir)
    rows = pictures.arithmetic(kind, module, images, labels, index, seed=seed)
    say(f"wrote {pictures.rows_png(rows, out, f'{kind.name}: latent-space arithmetic', cols=10)}")


@show_app.command("manifold")
def show_manifold(
    checkpoint: Checkpoint,
    size: Annotated[int, typer.Option(help="Digits per side of the grid (3-30).")] = 15,
    digit: Annotated[int | None, typer.Option(help="cvae, gan: the digit drawn (default 0).")] = None,
    seed: Seed = 0,
    out: Out = Path("manifold.png"),
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """The decoded latent plane: a 2-d latent, else its two principal axes over the test set (±2 spreads)."""
    from mnistcnn.generative import pictures

    if not 3 <= size <= 30:
        raise fail(f"--size must be 3..30; got {size}")
    if digit is not None and not 0 <= digit <= 9:
        raise fail(f"--digit must be 0..9; got {digit}")
    out = _picture(out, "--out", [checkpoint], force)
    kind, module, images, labels = _model_and_test_set(checkpoint, "latent", "show manifold", data_dir)
    if digit is not None and not kind.conditional:
        raise fail(f"--digit is for cvae and gan checkpoints; this one holds {kind.what}")
    grid = pictures.manifold(kind, module, images, labels, size, digit, seed)
    plane = (
        "z1 × z2"
        if module.latent == 2
        else ("two seeded noise directions" if kind.family == "generator" else "the two principal axes")
    )
    title = f"{kind.name}: the decoded latent plane ({plane}, ±2 spreads)" + (
        f", digit {digit or 0}" if kind.conditional else ""
    )
    say(f"wrote {pictures.grid_png(grid, size, out, title)}")


@show_app.command("latent")
def show_latent(
    checkpoint: Checkpoint,
    out: Out = Path("latent.png"),
    data_dir: DataDir = None,
    force: Force = False,
) -> None:
    """The 10,000 test digits in an autoencoder's latent space, coloured by digit."""
    from mnistcnn.generative import pictures

    out = _picture(out, "--out", [checkpoint], force)
    kind, module, images, labels = _model_and_test_set(checkpoint, "autoencoder", "show latent", data_dir)
    xy, ys, axes = pictures.latent_points(kind, module, images, labels)
    say(f"wrote {pictures.scatter_png(xy, ys, out, f'{kind.name}: the test set in latent space', axes)}")


@show_app.command("progress")
def show_progress(
    run: Annotated[Path, typer.Argument(help="A GAN run folder (it holds progress/epoch-NNN.png).")],
    out: Annotated[
        Path, typer.Option(help="A film strip (.png, .svg, .pdf, .jpg) or an animation (.gif, .webp).")
    ] = Path("progress.png"),
    force: Force = False,
) -> None:
    """A GAN's samples from fixed noise, epoch by epoch: one film strip, or an animated GIF/WebP."""
    from mnistcnn.generative import pictures
    from mnistcnn.outputs import FILM, check_output, write_bytes

    out = check_output(out, FILM, "--out", [run], force)
    if not run.is_dir():
        raise fail(f"{shown(run)} is not a folder; pass a GAN run folder")
    frames = pictures.progress_frames(run)
    if out.suffix.lower() in (".gif", ".webp"):
        write_bytes(out, pictures.animation_bytes(frames, out.suffix[1:].upper()))
    else:
        pictures.film_png(frames, out)
    say(f"wrote {out} ({len(frames)} epochs)")
