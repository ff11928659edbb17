"""The lecture's pictures, drawn from a real checkpoint: confusion matrix, failures, filters, feature maps,
classic kernels, activation functions, and what the network saw of a user's image.

Usage: `confusion_png(matrix, Path("confusion.png"))`. Each function takes numbers and writes one PNG; none
trains or evaluates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The lecture's hand-made 3×3 kernels
KERNELS = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32),
    "blur (box)": np.full((3, 3), 1 / 9, dtype=np.float32),
    "edge (Laplacian)": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float32),
    "vertical edge (Sobel)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    """Write the figure atomically (format from the extension, PNG without one); one-line error on failure."""
    from mnistcnn.outputs import save_figure

    try:
        return save_figure(fig, out)
    finally:
        _plt().close(fig)


def confusion_png(matrix, out: Path, title: str = "Confusion matrix (test set)") -> Path:
    plt = _plt()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    shown = np.log10(m + 1)  # the diagonal dwarfs the mistakes; log colour keeps both readable
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(shown.max(), 1e-9))
    for i in range(10):
        for j in range(10):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > shown.max() * 0.6 else "black",
            )
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    acc = np.trace(m) / m.sum()
    ax.set_title(f"{title} — accuracy {100 * acc:.2f} % of {m.sum()}")
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    ticks = [0] + [t for t in (1, 10, 100, 1000, 10000) if t <= m.max()]  # the bar ends at the largest cell
    bar.set_ticks(np.log10(np.array(ticks) + 1))
    bar.set_ticklabels([str(t) for t in ticks])
    bar.set_label("images (log scale)")
    return _save(fig, out)


def failures_png(images, truth, pred, conf, out: Path, n: int = 36) -> Path:
    """Misclassified digits, most confident mistakes first, titled 'true → predicted (p)'."""
    plt = _plt()
    order = np.argsort(-np.asarray(conf))[:n]
    cols = min(9, max(1, len(order)))
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.3 * cols, 1.5 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, order):
        ax.imshow(images[k], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"{truth[k]} → {pred[k]} ({conf[k]:.2f})", fontsize=8, color="tab:red")
    fig.suptitle(
        f"Some failures: {len(order)} of {len(conf)} misclassified test digits, most confident first"
    )
    return _save(fig, out)


def filters_png(weights, out: Path) -> Path:
    """conv1's 32 kernels (32, 1, 3, 3) on one shared, symmetric colour scale."""
    plt = _plt()
    w = np.asarray(weights)[:, 0]
    vmax = float(np.abs(w).max())
    fig, axes = plt.subplots(4, 8, figsize=(9, 5.2), layout="constrained")
    for k, ax in enumerate(axes.flat):
        im = ax.imshow(w[k], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"#{k}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    fig.suptitle("conv1: the 32 learned 3×3 kernels (red positive, blue negative)")
    return _save(fig, out)


def features_png(image, f1, f2, out: Path, label: str = "") -> Path:
    """The input and the feature maps after conv1 (32 × 14×14) and conv2 (64 × 6×6), activation and pooling applied."""
    plt = _plt()
    fig = plt.figure(figsize=(13, 6.6), layout="constrained")
    left, mid, right = fig.subfigures(1, 3, width_ratios=[1.3, 1.5, 2.6])
    ax = left.subplots()
    ax.imshow(image, cmap="gray")
    ax.set_title(f"input {label}".strip())
    ax.axis("off")
    for sub, maps, cols, name in ((mid, f1, 4, "conv1 block"), (right, f2, 8, "conv2 block")):
        rows = -(-len(maps) // cols)
        axes = sub.subplots(rows, cols)
        for k, a in enumerate(axes.flat):
            a.axis("off")
            if k < len(maps):
                a.imshow(maps[k], cmap="viridis")
        h, w = maps.shape[1:]
        sub.suptitle(f"{name}: {len(maps)} maps, {h}×{w}")
    fig.suptitle(
        "Feature maps after activation and pooling: brighter = stronger response (each map on its own scale)"
    )
    return _save(fig, out)


def kernels_png(image, out: Path) -> Path:
    """The lecture's identity, blur and edge kernels applied to one digit."""
    import torch
    import torch.nn.functional as F

    plt = _plt()
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]
    fig, axes = plt.subplots(2, len(KERNELS), figsize=(3.2 * len(KERNELS), 6.4), layout="constrained")
    for col, (name, k) in enumerate(KERNELS.items()):
        y = F.conv2d(x, torch.as_tensor(k)[None, None], padding=1)[0, 0].numpy()
        kv = max(abs(k).max(), 1e-6)
        axes[0, col].imshow(k, cmap="RdBu_r", vmin=-kv, vmax=kv)
        for (i, j), v in np.ndenumerate(k):
            axes[0, col].text(
                j,
                i,
                f"{v:.2g}",
                ha="center",
                va="center",
                fontsize=10,
                color="white" if abs(v) > 0.6 * kv else "black",
            )
        axes[0, col].set_title(f"kernel: {name}")
        lim = float(np.abs(y).max()) or 1.0
        im = axes[1, col].imshow(
            y, cmap="gray" if y.min() >= 0 else "RdBu_r", vmin=0 if y.min() >= 0 else -lim, vmax=lim
        )
        axes[1, col].set_title("output")
        fig.colorbar(im, ax=axes[1, col], shrink=0.7)
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Convolution with hand-made 3×3 kernels (as in the lecture)")
    return _save(fig, out)


def activations_png(out: Path) -> Path:
    """Step, sigmoid at slopes 0.5/1/2, tanh and ReLU."""
    plt = _plt()
    z = np.linspace(-6, 6, 601)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), layout="constrained")
    axes[0].plot(z, (z >= 0).astype(float), color="k")
    axes[0].set_title("step: 1 if z ≥ 0 else 0")
    for a in (0.5, 1, 2):
        axes[1].plot(z, 1 / (1 + np.exp(-a * z)), label=f"slope a = {a}")
    axes[1].set_title("sigmoid: 1 / (1 + e^(−a·z))")
    axes[1].legend()
    axes[2].plot(z, np.tanh(z), color="tab:purple")
    axes[2].set_title("tanh(z)")
    axes[3].plot(z, np.maximum(z, 0), color="tab:green")
    axes[3].set_title("ReLU: max(0, z)")
    for ax in axes:
        ax.axhline(0, color="gray", linewidth=0.6)
        ax.axvline(0, color="gray", linewidth=0.6)
        ax.set_xlabel("z (weighted input)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("activation")
    fig.suptitle("Activation functions (train with each: mnistcnn train --activation relu|sigmoid|tanh)")
    return _save(fig, out)


def input_row(picture, ex) -> tuple[np.ndarray, float, np.ndarray]:
    """What `inputs_png` keeps of one picture (so predict can free it before the next): a copy at most 900 px on
    its longer side, RGB uint8 with the ink that was counted in red; its scale from the file's pixels (the
    boxes' units); the 28×28 input(s). `picture`: images.Picture; `ex`: its images.Extraction."""
    import cv2

    gray = np.asarray(picture.gray, np.float32)
    f = min(1.0, 900 / max(gray.shape))  # a 12 MP photo is drawn from a small copy
    shown = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    ink = cv2.resize(ex.mask.astype(np.uint8), shown.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    rgb = np.repeat(shown[..., None], 3, axis=2)
    rgb[ink] = 0.35 * rgb[ink] + 0.65 * np.array([1.0, 0.1, 0.1])
    return (rgb * 255 + 0.5).astype(np.uint8), shown.shape[1] / picture.size[0], ex.digits


def inputs_png(rows, results, names, out: Path) -> Path:
    """Per image: the picture with the ink that was counted (red) and a box per digit with its prediction, beside
    the 28×28 input(s) the network saw. `rows`: `input_row`'s per image; `results`: predict.read_digits's."""
    plt = _plt()
    n = len(rows)
    grid = {"width_ratios": [1.4, 1]}
    fig, axes = plt.subplots(
        n, 2, figsize=(10, 3.2 * n), squeeze=False, layout="constrained", gridspec_kw=grid
    )
    for row, ((rgb, f, seen), res) in enumerate(zip(rows, results)):
        ax = axes[row, 0]
        ax.imshow(rgb)
        for d in res["digits"]:
            x0, y0, x1, y1 = (v * f for v in d["box"])
            ax.add_patch(
                plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1.5)
            )
            ax.text(x0, y0 - 2, str(d["prediction"]), color="lime", fontsize=10, va="bottom", weight="bold")
        ax.set_title(f"{Path(names[row]).name}: ink (red) and digits found", fontsize=9)
        strip = np.ones((28, 30 * len(seen) - 2), np.float32) * 0.5  # grey gaps between the inputs
        for k, d in enumerate(seen):
            strip[:, 30 * k : 30 * k + 28] = d
        confs = ", ".join(f"{d['prediction']} {max(d['probabilities']):.0%}" for d in res["digits"])
        axes[row, 1].imshow(strip, cmap="gray", vmin=0, vmax=1)
        title = (
            f"the network's input{'s' if len(seen) > 1 else ''} (28×28) → {res['text']}\nconfidence: {confs}"
        )
        axes[row, 1].set_title(title, fontsize=9)
        for a in axes[row]:
            a.set_xticks([])
            a.set_yticks([])
    return _save(fig, out)
