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
    out: Annotated[Path, typer.Option(help="Where to write: .png (a grid) or .npy (uint8 (N, 28, 28), ink 255 on 0).")],
    digit: Annotated[int | None, typer.Option(help="Draw only this digit (cvae, gan).")] = None,
    n: Annotated[int, typer.Option("--n", help="How many digits (a --style writes the ten digits 0-9).")] = 64,
    seed: Seed = 0,
    style: Annotated[
        Path | None,
        typer.Option(help="cvae: a picture of one digit (a drawing or a phone photo); writes 0-9 in its style."),
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
    ckpt, module = load_model(checkpoint, device, needs=needs, command="generate" + (" --digit" if digit is not None else ""))
    kind = kinds.of_checkpoint(ckpt)
    from mnistcnn.generative import sample

    if style is not None:
        if kind.name != "cvae":
            raise fail(f"{shown(checkpoint)} holds {kind.what} ({kind.name}); --style needs a cvae checkpoint")
        digits = sample.in_style(module, _one_digit(style))
    else:
        digits = sample.draw(kind, module, n, seed, digit)
    payload = sample.npy_bytes(digits) if out.suffix.lower() == ".npy" else sample.png_grid(digits)
    write_bytes(out, payload)
    what = "the ten digits 0-9 in its style" if style is not None else f"{len(digits)} digit{'s' * (len(digits) > 1)}"
    say(f"wrote {out} ({what})")


def _one_digit(path: Path):
    """A picture of one digit → 28×28 in [0, 1], through predict's photo pipeline (images.extract)."""
    from mnistcnn.images import extract, load_picture

    return extract(load_picture(path), False, str(path)).digits[0]


def eval_generative(checkpoint: Path, ckpt_model, data_dir, device, judge, k, nll_images, json_out) -> None:
    """`mnistcnn eval` of an ae, vae, cvae or gan checkpoint (see generative.evaluation)."""
    from mnistcnn.generative.evaluation import evaluate_checkpoint
    from mnistcnn.generative.judge import newest_judge

    if not 1 <= k <= 10_000:
        raise fail(f"--k must be 1..10000; got {k}")
    if nll_images is not None and nll_images <= 0:
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
        lines.append(f"  neg-ELBO {m['neg_elbo']:.2f} nats per image (reconstruction {m['recon']:.2f} + KL {m['kl']:.2f})")
        lines.append(
            f"  NLL {m['nll']:.2f} nats (importance-weighted, k = {m['nll_k']}, {m['nll_images']:,} images, binarized)"
        )
    elif m["kind"] == "ae":
        lines.append(f"  reconstruction loss {m['loss']:.2f} nats per image (BCE, summed over 784 pixels)")
    else:
        lines.append(f"  discriminator: {100 * m['d_real']:.1f} % real on test images, {100 * m['d_fake']:.1f} % on samples")
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
            lines.append(f"  class fidelity {100 * m['class_fidelity']:.2f} % (samples read as the digit asked for)")
    return lines
