"""People's pictures of digits → MNIST-style 28×28 inputs: phone photos of handwriting on paper, whiteboards and
blackboards, clean drawings, and numbers of up to eight digits written left to right.

Usage: `ex = extract(load_gray(Path("photo.jpg")), multi=True)` → `ex.digits` (N, 28, 28), `ex.boxes`, `ex.mask`.

The steps run on a copy at most WORK px on its longer side, so a 12 MP photo costs about what a 1 MP one does:
1. polarity: the ink is whichever tail (darker or lighter than the local background) carries more mass;
2. background: the paper or board, estimated by a grey closing wider than a stroke, divided out (uneven light,
   vignette and soft shadows go);
3. ink mask: Otsu's threshold on the normalised ink; thin straight lines (ruled paper, margins) removed;
4. digits: specks and paper edges dropped; a digit is its components, pieces of a 4 or a 5 kept together; with
   `multi`, the components on the text line grouped by horizontal overlap, too-wide groups split at the
   thinnest column;
5. MNIST's recipe per digit: thin strokes thickened to MNIST's width, the longer side scaled to 20 px
   (area-averaged, so antialiased), the centre of mass at the centre of a 28×28 field.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistcnn.errors import ImageError, TooManyPixels  # raised here, so importable from here too

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # a phone photo is ~12 MP; past this it is a mistake or a decompression bomb
MAX_DIGITS = 8
WORK = 800  # longer side of the working copy (px)
MIN_SIDE = 112  # tiny images are enlarged to this first, so every kernel below is at least a few px
STROKE = 0.13  # MNIST's stroke width / the digit's longer side (median of 500 test digits: 0.129)


@dataclass
class Extraction:
    """What `extract` found: the digits as the model sees them, where they are, and the ink it counted."""

    digits: np.ndarray  # (N, 28, 28) float32 in [0, 1], white on black, left to right
    boxes: list[tuple[int, int, int, int]]  # (x0, y0, x1, y1) per digit, exclusive ends, original pixels
    mask: np.ndarray  # (H, W) bool: the ink of the digits, in the original image's size


def load_gray(path) -> np.ndarray:
    """Any still image Pillow reads → float32 (H, W) in [0, 1], dark ink on light kept as it is.

    Transparent pixels are composited on white; 16-bit and float images are scaled by their range."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes); pass a PNG/JPEG/BMP/GIF/WebP/TIFF image")
    try:
        with open(path, "rb") as f:
            return _decode(f, str(path))
    except PermissionError:
        raise ImageError(f"{path} cannot be read (permission denied)") from None


def decode_gray(data: bytes, name: str = "upload") -> np.ndarray:
    """`load_gray` for the bytes of an image file (an upload)."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes); send a PNG/JPEG/BMP/GIF/WebP/TIFF image")
    return _decode(io.BytesIO(data), name)


def _decode(fp, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise TooManyPixels(
                        f"{name} is {img.width}×{img.height} pixels, over the {MAX_PIXELS // 1_000_000} MP limit; "
                        "crop or shrink it to the digit"
                    )
                img.seek(0)  # first frame of a GIF/TIFF
                img.load()
                return _to_gray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooManyPixels(  # Pillow refused it from the header alone
            f"{name} is not an image Pillow can read ({type(e).__name__}): far over the "
            f"{MAX_PIXELS // 1_000_000} MP limit; crop or shrink it to the digit"
        ) from None
    except UnidentifiedImageError as e:
        raise ImageError(
            f"{name} is not an image Pillow can read ({type(e).__name__}); use PNG, JPEG, BMP, GIF, WebP or TIFF"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name} could not be decoded ({e}); is the file complete?") from None


def _to_gray(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return np.clip(np.nan_to_num(a / top), 0, 1)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


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


def extract(gray: np.ndarray, multi: bool = False, name: str = "image") -> Extraction:
    """(H, W) gray in [0, 1] → the digit (or, with `multi`, the 1–8 digits left to right) as MNIST's 28×28.

    Raises ImageError (one line) when nothing digit-like is found or, with `multi`, more than eight digits."""
    import cv2

    from mnistcnn.segment import find_groups, ink_map, ink_mask

    gray = np.asarray(gray)
    if gray.ndim != 2 or min(gray.shape) < 2:
        shape = f"{gray.shape[1]}×{gray.shape[0]}" if gray.ndim == 2 else "×".join(map(str, gray.shape[::-1]))
        raise ImageError(f"{name} is {shape} pixels; a digit needs at least a few pixels each way")
    h, w = gray.shape
    f = WORK / max(h, w) if max(h, w) > WORK else max(1.0, MIN_SIDE / max(h, w))
    work = np.asarray(gray, dtype=np.float32)  # no copy for load_gray's output
    if f != 1.0:
        size = (max(2, round(w * f)), max(2, round(h * f)))
        work = cv2.resize(work, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    if not (np.isfinite(work).all() and work.min() >= 0 and work.max() <= 1):  # load_gray's output already is
        work = np.clip(np.nan_to_num(work), 0, 1)
    ink = ink_map(work, name)
    mask = ink_mask(ink)
    groups = find_groups(mask, multi, name)
    if multi and len(groups) > MAX_DIGITS:
        raise ImageError(
            f"{name} holds {len(groups)} digit-like marks; --multi reads numbers of 1 to {MAX_DIGITS} digits "
            "(crop the photo to one number)"
        )
    digits = np.stack([mnist_digit(ink, m, box) for m, box in groups])
    sy, sx = h / work.shape[0], w / work.shape[1]
    boxes = [
        (int(x0 * sx), int(y0 * sy), min(w, round(x1 * sx)), min(h, round(y1 * sy)))
        for _, (x0, y0, x1, y1) in groups
    ]
    found = np.zeros(work.shape, np.uint8)
    for m, (x0, y0, x1, y1) in groups:
        found[y0:y1, x0:x1] |= m
    return Extraction(digits, boxes, cv2.resize(found, (w, h), interpolation=cv2.INTER_NEAREST) > 0)


def mnist_digit(ink: np.ndarray, core: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """One digit's ink (`core`: its mask inside `box` of the ink map) → (28, 28) float32 as MNIST made them."""
    import cv2

    x0, y0, x1, y1 = box
    longer = max(x1 - x0, y1 - y0)
    pad = max(2, round(longer * STROKE))  # room for antialiased edges and thickening
    H, W = ink.shape
    a0, b0, a1, b1 = max(0, x0 - pad), max(0, y0 - pad), min(W, x1 + pad), min(H, y1 + pad)
    own = np.zeros((b1 - b0, a1 - a0), np.uint8)
    own[y0 - b0 : y1 - b0, x0 - a0 : x1 - a0] = core
    near = cv2.dilate(
        own, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    )  # the soft edge of the strokes
    img = np.where(near > 0, ink[b0:b1, a0:a1], 0).astype(np.float32)
    strong = img[own > 0]
    img = np.clip(img / max(float(np.percentile(strong, 90)) if strong.size else 1.0, 1e-3), 0, 1)
    width = (
        4 * cv2.distanceTransform(own, cv2.DIST_L2, 3).sum() / max(1, own.sum())
    )  # a band of width w: mean w/4
    grow = round(STROKE * longer - width)
    if grow >= 2 and width < 0.75 * STROKE * longer:  # a thin pen: thicken to MNIST's stroke
        img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow + 1, grow + 1)))
    x, y, w, h = cv2.boundingRect((img > 0.2).view(np.uint8))  # of the pixels over 0.2
    if w == 0:
        return np.zeros((28, 28), np.float32)
    crop = img[y : y + h, x : x + w]
    s = 20.0 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    small = np.clip(cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR), 0, 1)
    total = float(small.sum())
    ys, xs = np.indices(small.shape)
    cy, cx = ((ys * small).sum() / total, (xs * small).sum() / total) if total > 0 else (10.0, 10.0)
    top = min(max(int(round(14 - cy)), 0), 28 - small.shape[0])
    left = min(max(int(round(14 - cx)), 0), 28 - small.shape[1])
    field = np.zeros((28, 28), np.float32)
    field[top : top + small.shape[0], left : left + small.shape[1]] = small
    return field
