"""People's pictures of digits → MNIST-style 28×28 inputs: phone photos of handwriting on paper, whiteboards and
blackboards, clean drawings, and numbers of up to eight digits written left to right.

Usage: `ex = extract(load_picture(Path("photo.jpg")), multi=True)` → `ex.digits` (N, 28, 28), `ex.boxes`, `ex.mask`.
Every failure on a user's image — Pillow's, OpenCV's or the ink finder's — is one ImageError naming it (`boundary`);
only the promised formats are decoded (`formats()`), a large picture at reduced size (`DECODE_SIDE`).

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

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistcnn.errors import ImageError, MnistcnnError, TooManyPixels, UnreadableImage  # importable from here

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif"}
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # + AVIF where Pillow reads it (`formats()`)
HINT = "PNG/JPEG/BMP/GIF/WebP/TIFF/AVIF"
MAX_PIXELS = 40_000_000  # a phone photo is ~12 MP; past this it is a mistake or a decompression bomb
MAX_DIGITS = 8
WORK = 800  # longer side of the working copy (px)
DECODE_SIDE = 2 * WORK  # a larger picture is decoded at reduced size, never below this on its longer side
MIN_SIDE = 112  # tiny images are enlarged to this first, so every kernel below is at least a few px
STROKE = 0.13  # MNIST's stroke width / the digit's longer side (median of 500 test digits: 0.129)


@dataclass
class Extraction:
    """What `extract` found: the digits as the model sees them, where they are, and the ink it counted."""

    digits: np.ndarray  # (N, 28, 28) float32 in [0, 1], white on black, left to right
    boxes: list[tuple[int, int, int, int]]  # (x0, y0, x1, y1) per digit, exclusive ends, original pixels
    mask: np.ndarray  # (h, w) bool: the ink of the digits, in the gray's pixels (a large picture: reduced)


def formats() -> tuple[str, ...]:
    """The Pillow formats a picture may be in: the ones the README promises. Every other decoder Pillow has (DDS,
    SPIDER, PSD, FITS, …; ~40 of them, rarely fuzzed) is never reached by a user's file. (Phones' JPEGs with a
    preview or depth map open as MPO through the JPEG opener.)"""
    from PIL import features

    return FORMATS + (("AVIF",) if features.check("avif") else ())


@dataclass
class Picture:
    """A decoded picture: its gray pixels, decoded at reduced size when the file is large, and the file's size."""

    gray: np.ndarray  # (h, w) float32 in [0, 1]; at most ~2 × DECODE_SIDE px on its longer side
    size: tuple[int, int]  # (width, height) of the image in the file: boxes are given in these pixels


@contextlib.contextmanager
def boundary(name: str, doing: str = "decoded"):
    """The one boundary between a user's image and the libraries that read it: any exception from Pillow, OpenCV
    or the ink finder becomes one ImageError naming the file (the cause kept for --debug). Our own mistakes too:
    a bug must not be a traceback or a 500 for the person who sent the picture."""
    try:
        yield
    except MnistcnnError:
        raise
    except MemoryError:
        raise ImageError(
            f"{name} needs more memory to be {doing} than is free; send a smaller image"
        ) from None
    except Exception as e:
        why = " ".join(str(e).split())[:160] or "no details"
        raise UnreadableImage(
            f"{name} could not be {doing} ({type(e).__name__}: {why}); "
            f"send a complete {HINT} picture of the digit"
        ) from e


def load_picture(path) -> Picture:
    """An image file → `Picture` (its gray pixels and size). ImageError (one line naming the file) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes); pass a {HINT} image")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the `with f` below; only opening errors are caught here
    except OSError as e:  # permission denied, an I/O error, gone since is_file
        raise ImageError(f"{path} cannot be read ({(e.strerror or str(e)).lower()})") from None
    with f:
        return _decode(f, str(path))


def decode_picture(data: bytes, name: str = "upload", admit=None) -> Picture:
    """`load_picture` for the bytes of an image file (an upload). `admit(pixels)`: a context manager held while
    the picture decodes (the server's budget of decoded pixels), entered once its header passed the checks."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes); send a {HINT} image")
    return _decode(io.BytesIO(data), name, admit=admit)


def load_gray(path) -> np.ndarray:
    """Any still image in the promised formats → float32 (H, W) in [0, 1], dark ink on light kept as it is.

    Transparent pixels are composited on white; 16-bit and float images are scaled by their range. A large image
    is decoded at reduced size (`load_picture` also gives the file's size, to place boxes in its pixels)."""
    return load_picture(path).gray


def decode_gray(data: bytes, name: str = "upload") -> np.ndarray:
    """`load_gray` for the bytes of an image file (an upload)."""
    return decode_picture(data, name).gray


def _decode(fp, name: str, admit=None) -> Picture:
    from PIL import Image, UnidentifiedImageError

    try:
        with boundary(name), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like: the line below says it all
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp, formats=formats()) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise TooManyPixels(
                        f"{name} is {img.width}×{img.height} pixels, over the {MAX_PIXELS // 1_000_000} MP limit; "
                        "crop or shrink it to the digit"
                    )
                size = img.size  # before draft() changes it
                with admit(size[0] * size[1]) if admit else contextlib.nullcontext():
                    return Picture(_pixels(img), size)  # reduced: what is kept after this is small
    except UnreadableImage as e:
        cause = e.__cause__
        if isinstance(cause, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise TooManyPixels(  # Pillow refused it from the header alone
                f"{name} is not an image Pillow can read ({type(cause).__name__}): far over the "
                f"{MAX_PIXELS // 1_000_000} MP limit; crop or shrink it to the digit"
            ) from None
        if isinstance(cause, UnidentifiedImageError):
            raise ImageError(
                f"{name} is not an image Pillow can read ({type(cause).__name__}); use {HINT}"
            ) from None
        if isinstance(cause, (OSError, SyntaxError, ValueError, EOFError)):
            raise ImageError(f"{name} could not be decoded ({cause}); is the file complete?") from None
        raise


def _pixels(img) -> np.ndarray:
    """The first frame, decoded at reduced size when large: a JPEG by its DCT scaling (`draft`: 1/2, 1/4 or 1/8,
    so a 40 MP photo never exists in memory at full size), others box-averaged by Pillow's `reduce` right
    after decoding, before the float copy. Never below DECODE_SIDE px on the longer side (the ink finder works
    on WORK px)."""
    img.seek(0)  # first frame of a GIF/TIFF
    w, h = img.size
    k = _factor(w, h)
    if k >= 2 and img.format in ("JPEG", "MPO"):
        img.draft("L" if img.mode == "RGB" else None, (max(1, w // k), max(1, h // k)))
    img.load()
    gray = _to_gray(img)
    k = 1 if isinstance(gray, np.ndarray) else _factor(*gray.size)
    if k >= 2:
        gray = gray.reduce(k)
    if not isinstance(gray, np.ndarray):
        gray = np.asarray(gray, dtype=np.float32) / 255.0
    return _shrink(gray)


def _factor(w: int, h: int) -> int:
    """The integer reduction for a w × h picture: its longer side kept at DECODE_SIDE or more, its shorter side
    at 28 or more (a 3 × 40,000 needle is left as it is: its message names its real size)."""
    return max(1, min(max(w, h) // DECODE_SIDE, min(w, h) // 28))


def _shrink(a: np.ndarray) -> np.ndarray:
    """A float picture (16-bit or float modes) over 2 × DECODE_SIDE px: area-averaged down (OpenCV)."""
    k = _factor(a.shape[1], a.shape[0])
    if k < 2:
        return a
    import cv2

    size = (max(1, a.shape[1] // k), max(1, a.shape[0] // k))
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA)


def _to_gray(img):
    """A decoded frame → a Pillow "L" image, or (16-bit and float modes) a float32 array in [0, 1]."""
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img, dtype=np.float32)
        peak = float(np.nanmax(a)) if a.size and np.isfinite(a).any() else 0.0
        top = 65535.0 if img.mode.startswith("I;16") or peak > 255 else 255.0
        return np.clip(np.nan_to_num(a / top, posinf=1.0, neginf=0.0), 0, 1).astype(np.float32)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("L")


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


def extract(image, multi: bool = False, name: str = "image") -> Extraction:
    """A gray (H, W) array in [0, 1], or a `Picture` → the digit (or, with `multi`, the 1–8 digits left to right)
    as MNIST's 28×28. Boxes are in the picture file's pixels (a Picture) or the array's.

    Raises ImageError (one line) when nothing digit-like is found or, with `multi`, more than eight digits; any
    other failure on this image is one line too (`boundary`)."""
    size = image.size if isinstance(image, Picture) else None
    gray = np.asarray(image.gray if isinstance(image, Picture) else image)
    with boundary(name, "read as a digit"):
        return _extract(gray, multi, name, size)


def _extract(gray: np.ndarray, multi: bool, name: str, size) -> Extraction:
    import cv2

    from mnistcnn.segment import find_groups, ink_map, ink_mask

    if gray.ndim != 2 or min(gray.shape) < 2:
        shape = f"{gray.shape[1]}×{gray.shape[0]}" if gray.ndim == 2 else "×".join(map(str, gray.shape[::-1]))
        raise ImageError(f"{name} is {shape} pixels; a digit needs at least a few pixels each way")
    h, w = gray.shape
    f = WORK / max(h, w) if max(h, w) > WORK else max(1.0, MIN_SIDE / max(h, w))
    work = np.asarray(gray, dtype=np.float32)  # no copy for load_gray's output
    if f != 1.0:
        work = cv2.resize(
            work,
            (max(2, round(w * f)), max(2, round(h * f))),
            interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
        )
    if not (np.isfinite(work).all() and work.min() >= 0 and work.max() <= 1):  # load_gray's output already is
        work = np.clip(np.nan_to_num(work), 0, 1)
    ink = ink_map(work, name)
    groups = find_groups(ink_mask(ink), multi, name)
    if multi and len(groups) > MAX_DIGITS:
        raise ImageError(
            f"{name} holds {len(groups)} digit-like marks; --multi reads numbers of 1 to {MAX_DIGITS} digits "
            "(crop the photo to one number)"
        )
    digits = np.stack([mnist_digit(ink, m, box) for m, box in groups])
    W, H = size or (w, h)
    sy, sx = H / work.shape[0], W / work.shape[1]
    boxes = [
        (int(x0 * sx), int(y0 * sy), min(W, round(x1 * sx)), min(H, round(y1 * sy)))
        for _, (x0, y0, x1, y1) in groups
    ]
    found = np.zeros(work.shape, np.uint8)
    for m, (x0, y0, x1, y1) in groups:
        found[y0:y1, x0:x1] |= m
    return Extraction(digits, boxes, cv2.resize(found, (w, h), interpolation=cv2.INTER_NEAREST) > 0)


def mnist_digit(ink: np.ndarray, core: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """One digit's ink (`core`: its mask inside `box` of the ink map) → (28, 28) float32 as MNIST made them."""
    import cv2

    from mnistcnn.segment import stroke_width

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
    width = stroke_width(own)
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
