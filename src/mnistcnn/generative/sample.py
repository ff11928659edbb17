"""Drawing digits from a generative checkpoint: samples, one style written as every digit, grids and files.

Usage: `digits = draw(kind, module, n=64, seed=0, digit=None)` → uint8 (N, 28, 28), MNIST polarity (ink 255 on 0);
`in_style(module, gray)` → the ten digits 0–9 in the style of one 28×28 digit (cvae);
`png_grid(digits, cols)` → PNG bytes; `write_progress(gan, run_dir, epoch)` (a GAN run, each epoch).
Same seed, same digits: the noise comes from a generator seeded by `seed` alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

PROGRESS = "progress"  # a GAN run folder's samples from fixed noise, one PNG per epoch
PROGRESS_SEED = 20140610  # the fixed noise (the GAN paper's arXiv date)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(N, 1, 28, 28) pixels in [0, 1] → uint8 (N, 28, 28)."""
    return (pixels.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).cpu().numpy()


def labels_for(n: int, digit: int | None, device) -> torch.Tensor:
    """The asked digit n times, or 0, 1, …, 9, 0, 1, … (a grid with one digit per column)."""
    ys = torch.full((n,), digit) if digit is not None else torch.arange(n) % 10
    return ys.to(device)


@torch.inference_mode()
def decode_pixels(kind, module, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Latent codes → pixels in [0, 1]: the decoder's means (vae, cvae, ae) or the EMA generator (gan)."""
    module.eval()
    if kind.name == "gan":
        return module.sample(z, y)
    return torch.sigmoid(module.decode(z, y if kind.conditional else None).float())


@torch.inference_mode()
def draw(kind, module, n: int, seed: int = 0, digit: int | None = None) -> np.ndarray:
    """n new digits from the prior (z ~ N(0, I)); conditional kinds write `digit`, or all ten in turn."""
    device = next(module.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    z = torch.randn((n, module.latent), generator=gen, device=device)
    y = labels_for(n, digit, device) if kind.conditional else None
    return to_uint8(
        torch.cat(
            [
                decode_pixels(kind, module, z[i : i + 1000], None if y is None else y[i : i + 1000])
                for i in range(0, n, 1000)
            ]
        )
    )


@torch.inference_mode()
def style_of(module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, the digit) of 28×28 images x (B, 1, 28, 28) in [0, 1] for a cvae: the digit is the one whose
    encoding explains x best (the highest ELBO, z at its mean), z the style at that digit."""
    from mnistcnn.generative.tasks import bce_per_image, kl_per_image

    module.eval()
    b = len(x)
    xs = x.repeat(10, 1, 1, 1)
    ys = torch.arange(10, device=x.device).repeat_interleave(b)
    mu, logvar = module.encode(xs, ys)
    elbo = -(bce_per_image(module.decode(mu, ys), xs) + kl_per_image(mu, logvar)).view(10, b)
    best = elbo.argmax(0)
    return mu.view(10, b, -1)[best, torch.arange(b)], best


def in_style(module, gray: np.ndarray) -> np.ndarray:
    """The ten digits 0–9 written in the style of one digit (28×28 in [0, 1]) by a cvae: uint8 (10, 28, 28)."""
    return written_in_style(module, gray)[0]


@torch.inference_mode()
def written_in_style(module, gray: np.ndarray) -> tuple[np.ndarray, int]:
    """`in_style`'s ten digits, and the digit the cvae read the style as."""
    device = next(module.parameters()).device
    x = torch.from_numpy(np.asarray(gray, dtype=np.float32)).view(1, 1, 28, 28).to(device)
    z, best = style_of(module, x)
    ys = torch.arange(10, device=device)
    return to_uint8(torch.sigmoid(module.decode(z.repeat(10, 1), ys).float())), int(best[0])


def tile(digits: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """uint8 (N, 28, 28) → one uint8 picture, `cols` digits a row, `pad` black pixels between."""
    n = len(digits)
    rows = -(-n // cols)
    out = np.zeros((rows * (28 + pad) + pad, cols * (28 + pad) + pad), np.uint8)
    for i, d in enumerate(digits):
        r, c = divmod(i, cols)
        out[
            pad + r * (28 + pad) : pad + r * (28 + pad) + 28, pad + c * (28 + pad) : pad + c * (28 + pad) + 28
        ] = d
    return out


def png_bytes(picture: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    img = Image.fromarray(picture, mode="L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_grid(digits: np.ndarray, cols: int | None = None, scale: int = 2) -> bytes:
    cols = cols or min(10, len(digits))
    return png_bytes(tile(digits, cols), scale)


def npy_bytes(digits: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(digits, dtype=np.uint8), allow_pickle=False)
    return buf.getvalue()


def write_progress(gan, run_dir: Path, epoch: int) -> Path:
    """The GAN's samples from fixed noise after `epoch`: progress/epoch-NNN.png, ten rows, one digit a column."""
    from mnistcnn import kinds, outputs

    digits = draw(kinds.get("gan"), gan, 100, PROGRESS_SEED)
    folder = Path(run_dir) / PROGRESS
    try:
        folder.mkdir(exist_ok=True)
    except OSError as e:
        raise outputs.write_error(folder, e, "free some space or choose another --run-dir") from None
    gan.train()
    return outputs.write_bytes(folder / f"epoch-{epoch:03d}.png", png_grid(digits, 10, scale=1))
