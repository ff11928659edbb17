"""The generative half's pictures (mnistcnn show reconstructions|interpolate|arithmetic|manifold|latent|progress):
numbers in, one picture out; none trains.

Usage: `rows = reconstructions(kind, module, images, labels)`; `rows_png(rows, out, title)`. A "row" is
(label, uint8 (N, 28, 28) digits); every function returns rows or points for the drawing functions below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mnistcnn.generative import sample


def _x(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images, np.float32) / 255).unsqueeze(1).to(device)


def _dev(module):
    return next(module.parameters()).device


@torch.inference_mode()
def encode_mean(kind, module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The latent code of images (the mean of q(z|x) for a VAE)."""
    module.eval()
    out = [
        module.encode(x[i : i + 1000], None if y is None or not kind.conditional else y[i : i + 1000])
        for i in range(0, len(x), 1000)
    ]
    return torch.cat([o[0] if isinstance(o, tuple) else o for o in out])


def decode(kind, module, z, y=None) -> np.ndarray:
    return sample.to_uint8(sample.decode_pixels(kind, module, z, y))


def reconstructions(kind, module, images: np.ndarray, labels: np.ndarray) -> list:
    x, y = _x(images, _dev(module)), torch.as_tensor(labels, device=_dev(module))
    z = encode_mean(kind, module, x, y)
    return [
        ("test images", np.asarray(images)),
        ("reconstructions", decode(kind, module, z, y if kind.conditional else None)),
    ]


def _line(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    t = torch.linspace(0, 1, steps, device=a.device).view(-1, *([1] * a.dim()))
    return a.unsqueeze(0) * (1 - t) + b.unsqueeze(0) * t


def read_labels(kind, module, x: torch.Tensor, labels) -> torch.Tensor | None:
    """The digits of images x for a conditional kind: each given label, or where it is None the cvae's own reading
    (the digit whose code explains the image best); None for the other kinds."""
    if not kind.conditional:
        return None
    read = sample.style_of(module, x)[1].tolist() if None in labels else labels
    return torch.as_tensor([r if y is None else y for y, r in zip(labels, read)], device=x.device)


def interpolate(
    kind, module, a: np.ndarray, b: np.ndarray, labels=(None, None), steps: int = 10, seed: int = 0
) -> list:
    """Autoencoders: the decoded straight line between two uint8 images' codes (a label None: read by a cvae),
    beside the pixels' cross-fade. A GAN
    (a, b unused): the line between two noise vectors at digit labels[0], and between digits labels[0] → labels[1]
    at one noise vector."""
    dev = _dev(module)
    if kind.family == "generator":
        gen = torch.Generator(device=dev).manual_seed(seed)
        z0, z1 = torch.randn((2, module.latent), generator=gen, device=dev)
        da, db = labels
        eye = torch.eye(10, device=dev)
        zs = _line(z0, z1, steps)
        same = decode(kind, module, zs, torch.full((steps,), da, device=dev))
        mix = decode(kind, module, z0.repeat(steps, 1), _line(eye[da], eye[db], steps))
        return [(f"noise z0 → z1 (digit {da})", same), (f"digit {da} → {db} (same z)", mix)]
    x = _x(np.stack([a, b]), dev)
    y = read_labels(kind, module, x, labels)
    z = encode_mean(kind, module, x, y)
    zs = _line(z[0], z[1], steps)
    eye = torch.eye(10, device=dev)
    ys = _line(eye[y[0]], eye[y[1]], steps) if kind.conditional else None
    pixels = (_line(x[0], x[1], steps).clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).cpu().numpy()
    return [("latent space", decode(kind, module, zs, ys)), ("pixel space", pixels)]


def ink(digits: np.ndarray) -> np.ndarray:
    """Stroke thickness, in pixels of ink (> 127) per image."""
    return (np.asarray(digits) > 127).reshape(len(digits), -1).sum(1)


def latents_with_images(kind, module, images, labels, n: int = 5000, seed: int = 0):
    """(z, digits uint8, labels): test images and their codes (autoencoders) or a GAN's noise and its samples."""
    dev = _dev(module)
    if kind.family == "generator":
        gen = torch.Generator(device=dev).manual_seed(seed)
        z = torch.randn((n, module.latent), generator=gen, device=dev)
        y = sample.labels_for(n, None, dev)
        return z, decode(kind, module, z, y), y.cpu().numpy()
    x, y = _x(images[:n], dev), torch.as_tensor(labels[:n], device=dev)
    return encode_mean(kind, module, x, y), np.asarray(images[:n]), np.asarray(labels[:n])


def arithmetic(kind, module, images, labels, index: int, alphas=(-2, -1, 0, 1, 2), seed: int = 0) -> list:
    """The lecture's latent arithmetic: (1) the style of test digit `index` moved onto every digit — a conditional
    kind decodes its z with each label; an unconditional one adds (mean code of digit d − mean code of its own
    digit); (2) the attribute vector thick − thin (mean code of the thickest fifth minus the thinnest fifth of
    each digit) added × alpha to five digits."""
    dev = _dev(module)
    z, digits, ys = latents_with_images(kind, module, images, labels, seed=seed)
    rows = []
    if kind.family != "generator":
        x = _x(images[index : index + 1], dev)
        y = torch.as_tensor(labels[index : index + 1], device=dev)
        zi = encode_mean(kind, module, x, y)
        if kind.conditional:
            moved = decode(kind, module, zi.repeat(10, 1), torch.arange(10, device=dev))
        else:
            means = torch.stack([z[torch.as_tensor(ys == d, device=dev)].mean(0) for d in range(10)])
            moved = decode(kind, module, zi + means - means[int(labels[index])], None)
        rows.append((f"test digit #{index} ({int(labels[index])})", np.asarray(images[index : index + 1])))
        rows.append(("its style as 0-9", moved))
    thickness = ink(digits)
    vector = torch.zeros(module.latent, device=dev)
    for d in range(10):
        mine = np.flatnonzero(ys == d)
        order = mine[np.argsort(thickness[mine])]
        fifth = max(1, len(order) // 5)
        vector += (
            z[torch.as_tensor(order[-fifth:], device=dev)].mean(0)
            - z[torch.as_tensor(order[:fifth], device=dev)].mean(0)
        ) / 10
    picks = [int(np.flatnonzero(ys == d)[0]) for d in (0, 2, 3, 7, 8)]
    for p in picks:
        zs = torch.stack([z[p] + a * vector for a in alphas])
        yy = torch.full((len(alphas),), int(ys[p]), device=dev) if kind.conditional else None
        rows.append(
            (
                f"{int(ys[p])} + α(thick − thin), α = {alphas[0]:g}…{alphas[-1]:g}",
                decode(kind, module, zs, yy),
            )
        )
    return rows


def axes_of(z: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centre, two unit directions, their spreads) of codes: the two principal axes (a 2-d latent: its own)."""
    centre = z.mean(0)
    if z.shape[1] == 2:
        return centre, torch.eye(2, device=z.device), z.std(0)
    _, s, v = torch.linalg.svd(z - centre, full_matrices=False)
    return centre, v[:2], s[:2] / (len(z) - 1) ** 0.5


def manifold(
    kind, module, images, labels, size: int = 15, digit: int | None = None, seed: int = 0
) -> np.ndarray:
    """The decoded grid over the latent plane (a 2-d latent, or its two principal axes over the test set; a GAN's
    noise: two seeded directions), ±2 spreads around the centre: uint8 (size², 28, 28), row-major."""
    dev = _dev(module)
    if kind.family == "generator":
        gen = torch.Generator(device=dev).manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn((module.latent, 2), generator=gen, device=dev))
        centre, dirs, spread = torch.zeros(module.latent, device=dev), q.T, torch.ones(2, device=dev)
    else:
        z, _, _ = latents_with_images(kind, module, images, labels)
        centre, dirs, spread = axes_of(z)
    t = torch.linspace(-2, 2, size, device=dev)
    grid = torch.stack(
        [centre + a * spread[0] * dirs[0] + b * spread[1] * dirs[1] for b in t.flip(0) for a in t]
    )
    y = torch.full((len(grid),), 0 if digit is None else digit, device=dev) if kind.conditional else None
    return decode(kind, module, grid, y)


def latent_points(kind, module, images, labels) -> tuple[np.ndarray, np.ndarray, str]:
    """The test set's codes in 2-d (a 2-d latent as it is, else its two principal axes), labels, axis words."""
    z, _, ys = latents_with_images(kind, module, images, labels, n=len(images))
    centre, dirs, _ = axes_of(z)
    xy = ((z - centre) @ dirs.T).cpu().numpy()
    words = "z₁, z₂" if z.shape[1] == 2 else f"the first two principal axes of the {z.shape[1]}-d codes"
    return xy, ys, words


# --- drawing ---


def rows_png(rows: list, out: Path, title: str, cols: int | None = None) -> Path:
    """Labelled rows of digits in one figure (each row's digits in order, left to right)."""
    from matplotlib.figure import Figure

    from mnistcnn.outputs import save_figure

    cols = cols or max(len(r[1]) for r in rows)
    fig = Figure(figsize=(max(6.0, 0.62 * cols + 2.6), 0.72 * len(rows) + 0.7))
    fig.suptitle(title, fontsize=11)
    grid = fig.add_gridspec(
        len(rows),
        cols + 3,
        left=0.01,
        right=0.99,
        top=1 - 0.55 / fig.get_figheight(),
        bottom=0.02,
        wspace=0.05,
        hspace=0.15,
    )
    for r, (label, digits) in enumerate(rows):
        ax = fig.add_subplot(grid[r, :3])
        ax.axis("off")
        ax.text(1.0, 0.5, label, ha="right", va="center", fontsize=8, transform=ax.transAxes, wrap=True)
        for c, d in enumerate(digits[:cols]):
            ax = fig.add_subplot(grid[r, 3 + c])
            ax.imshow(d, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, out)


def grid_png(digits: np.ndarray, size: int, out: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    from mnistcnn.outputs import save_figure

    fig = Figure(figsize=(7, 7.4))
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.9])
    ax.imshow(sample.tile(digits, size, pad=0), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def scatter_png(xy: np.ndarray, labels: np.ndarray, out: Path, title: str, axes: str) -> Path:
    from matplotlib.figure import Figure

    from mnistcnn.outputs import save_figure

    fig = Figure(figsize=(8, 7))
    ax = fig.add_subplot()
    points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=3, alpha=0.6, vmin=-0.5, vmax=9.5)
    cbar = fig.colorbar(points, ax=ax, ticks=range(10))
    cbar.set_label("digit")
    for d in range(10):
        cx, cy = np.median(xy[labels == d], axis=0)
        ax.text(
            cx,
            cy,
            str(d),
            fontsize=14,
            weight="bold",
            ha="center",
            va="center",
            color="black",
            bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0},
        )
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(axes)
    fig.tight_layout()
    return save_figure(fig, out)


def progress_frames(run: Path) -> list[tuple[int, np.ndarray]]:
    """(epoch, its sample grid as uint8) for every progress/epoch-NNN.png of a GAN run folder, in epoch order,
    each read through safeio (inside the folder, a regular file, capped) and the images boundary."""
    import re

    from mnistcnn import safeio
    from mnistcnn.errors import MnistcnnError
    from mnistcnn.images import decode_gray

    folder = run / sample.PROGRESS
    names = (
        sorted(p.name for p in folder.iterdir() if re.fullmatch(r"epoch-\d{3,6}\.png", p.name))
        if folder.is_dir()
        else []
    )
    if not names:
        raise MnistcnnError(
            f"{safeio.shown(run)} has no {sample.PROGRESS}/epoch-NNN.png; is it a GAN run folder (mnistcnn train --model gan)?"
        )
    frames = []
    for name in names:
        data = safeio.read_capped(folder / name, 4 << 20, within=run)
        frames.append((int(name[6:-4]), (decode_gray(data, name) * 255).round().astype(np.uint8)))
    return frames


def film_picks(count: int, most: int) -> list[int]:
    """Indices of at most `most` of `count` frames, evenly spaced, the first and the last always among them."""
    n = min(most, count)
    return sorted({round(i * (count - 1) / max(1, n - 1)) for i in range(n)})


def film_png(frames: list, out: Path, most: int = 10) -> Path:
    """Up to `most` epochs' sample grids side by side, evenly spaced, the last always shown."""
    from matplotlib.figure import Figure

    from mnistcnn.outputs import save_figure

    chosen = [frames[i] for i in film_picks(len(frames), most)]
    fig = Figure(figsize=(2.3 * len(chosen) + 0.2, 2.7))
    for i, (epoch, grid) in enumerate(chosen):
        ax = fig.add_subplot(1, len(chosen), i + 1)
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"epoch {epoch}", fontsize=9)
        ax.axis("off")
    fig.suptitle("GAN samples from fixed noise (one digit per column)", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.82, wspace=0.05)
    return save_figure(fig, out)


def animation_bytes(frames: list, fmt: str) -> bytes:
    """An animated GIF or WebP of every epoch's grid (0.5 s a frame, the last held 2 s)."""
    import io

    from PIL import Image

    images = [
        Image.fromarray(g, mode="L").resize((g.shape[1] * 2, g.shape[0] * 2), Image.NEAREST)
        for _, g in frames
    ]
    durations = [500] * (len(images) - 1) + [2000]
    buf = io.BytesIO()
    images[0].save(buf, format=fmt, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buf.getvalue()
