"""Read people's digit images and prepare them the way MNIST's digits were made, then predict.

Usage: `digit = preprocess(load_gray(Path("seven.png")))`; `predict_files(ckpt_path, [paths])`.

MNIST's recipe: white ink on black, the digit's bounding box scaled (aspect kept, antialiased) so its longer
side is 20 px, placed in a 28×28 field with its centre of mass at the centre.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mnistcnn.errors import MnistcnnError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # a phone photo is ~12 MP; past this it is a mistake or a decompression bomb
INK = 0.2  # after inversion to white-on-black: brighter than this counts as ink when finding the digit


class ImageError(MnistcnnError):
    pass


def load_gray(path: Path) -> np.ndarray:
    """Any still image Pillow reads → float64 (H, W) in [0, 1], dark ink on light kept as it is.

    Transparent pixels are composited on white; 16-bit and float images are scaled by their range.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes); pass a PNG/JPEG/BMP/GIF/WebP/TIFF image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(
                        f"{path} is {img.width}×{img.height} pixels, over the {MAX_PIXELS // 1_000_000} MP limit; "
                        "crop or shrink it to the digit"
                    )
                img.seek(0)  # first frame of a GIF/TIFF
                img.load()
                return _to_gray(img)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(
            f"{path} is not an image Pillow can read ({type(e).__name__}); use PNG, JPEG, BMP, "
            "GIF, WebP or TIFF"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path} could not be decoded ({e}); is the file complete?") from None


def _to_gray(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return np.clip(a / top, 0, 1)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


def preprocess(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W) gray in [0, 1] → (28, 28) float32 in [0, 1], white digit on black, as MNIST's."""
    from PIL import Image

    if gray.ndim != 2 or min(gray.shape) < 2:
        raise ImageError(
            f"{name} is {gray.shape[1] if gray.ndim > 1 else 1}×{gray.shape[0]} pixels; a digit needs "
            "at least a few pixels each way"
        )
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = 1.0 - gray if np.median(border) > 0.5 else gray.copy()  # light background: dark ink → invert
    ink -= np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]]))  # background to 0
    ink = np.clip(ink, 0, None)
    if ink.max() < 0.15:
        raise ImageError(f"{name} shows no digit (it is one flat colour); write the digit darker or larger")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > INK)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    box = np.asarray(
        Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    )
    box = np.clip(box, 0, 1)
    total = box.sum()
    ys, xs = np.indices(box.shape)
    cy, cx = (ys * box).sum() / total, (xs * box).sum() / total
    top, left = int(round(14 - cy)), int(round(14 - cx))
    top, left = min(max(top, 0), 28 - box.shape[0]), min(max(left, 0), 28 - box.shape[1])
    field = np.zeros((28, 28), dtype=np.float32)
    field[top : top + box.shape[0], left : left + box.shape[1]] = box
    return field


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders → their image files, sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES)
            if not found:
                raise ImageError(f"{p} holds no image files ({', '.join(sorted(SUFFIXES))})")
            out += found
        else:
            out.append(p)
    return out


def model_input(ckpt: dict, model, digits: np.ndarray):
    """(N, 28, 28) digits in [0, 1] → (N, 1, 28, 28) float tensor on the model's device, normalised the way the
    checkpoint was trained."""
    import torch

    from mnistcnn.checkpoint import normalization

    mean, std = normalization(ckpt)
    dev = next(model.parameters()).device
    return (torch.from_numpy(np.asarray(digits, dtype=np.float32)).unsqueeze(1).to(dev) - mean) / std


def predict_arrays(ckpt: dict, digits: np.ndarray, model=None) -> np.ndarray:
    """(N, 28, 28) digits in [0, 1] → (N, 10) probabilities, normalised as the checkpoint was trained.

    `model`: the checkpoint's MyNet (on any device); rebuilt on the CPU from `ckpt` when not given."""
    import torch

    from mnistcnn.checkpoint import model_from_checkpoint

    model = model if model is not None else model_from_checkpoint(ckpt)
    with torch.inference_mode():
        return torch.softmax(model(model_input(ckpt, model, digits)).float(), dim=1).cpu().numpy()
