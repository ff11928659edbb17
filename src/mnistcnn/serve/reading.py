"""An uploaded image → what MyNet reads in it, with the input it saw and, on request, its feature maps.

Usage: `answer = read_upload(loaded, body_bytes, "photo.jpg", multi=False, features=True)`.
The image work is the library's (`images.decode_gray`, `predict.read_digits`), as for `mnistcnn predict`.
"""

from __future__ import annotations

import functools
import io

import numpy as np

from mnistcnn.errors import MnistcnnError
from mnistcnn.serve import pictures


class UnsupportedImage(MnistcnnError):
    status = 415


class TooLarge(MnistcnnError):
    status = 413


def read_upload(loaded, data: bytes, name: str, multi: bool = False, features: bool = False) -> dict:
    """The answer of POST /api/predict: prediction, probabilities, text, digits, input_png (+ features)."""
    if not data:
        raise MnistcnnError(
            "the request has no image: send the image bytes (Content-Type image/*) or a "
            "multipart field named 'image'"
        )
    _check_pixels(data, name)
    try:
        gray = _decode_gray(data, name)
    except MnistcnnError as e:
        raise UnsupportedImage(str(e)) from None
    result = _read_digits(loaded.ckpt, loaded.model, gray, multi, name)
    inputs = result.pop("inputs")
    result["input_png"] = pictures.png_data_url(inputs[0] if len(inputs) == 1 else pictures.strip(inputs))
    if features:
        from mnistcnn.explain import feature_maps

        result["features"] = pictures.features(*feature_maps(loaded.ckpt, loaded.model, inputs[0]))
    return result


def _check_pixels(data: bytes, name: str) -> None:
    """predict's pixel limit, read from the header before anything is decoded."""
    from PIL import Image

    limit = _max_pixels()
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Image.DecompressionBombError:  # PIL refuses the header itself: far past the limit
        raise TooLarge(f"{name} is over the {limit // 1_000_000} MP limit; crop or shrink it") from None
    except Exception:  # noqa: BLE001  not an image: decoding says so with its own message
        return
    if w * h > limit:
        raise TooLarge(f"{name} is {w}×{h} pixels, over the {limit // 1_000_000} MP limit; crop or shrink it")


# --- TEMPORARY adapter (issue 11 lands images.decode_gray and predict.read_digits; then only those are used) ---


@functools.cache  # resolved once: a failing import searches sys.path again every time (~6 ms a request)
def _library() -> tuple:
    try:
        from mnistcnn.images import MAX_PIXELS, decode_gray
        from mnistcnn.predict import read_digits
    except ImportError:
        from mnistcnn.predict import MAX_PIXELS

        return (
            MAX_PIXELS,
            _decode_gray_today,
            lambda ckpt, model, gray, multi, name: _read_digits_today(ckpt, model, gray, name),
        )
    return MAX_PIXELS, decode_gray, read_digits


def _max_pixels() -> int:
    return _library()[0]


def _decode_gray(data: bytes, name: str) -> np.ndarray:
    return _library()[1](data, name)


def _read_digits(ckpt, model, gray, multi: bool, name: str) -> dict:
    return _library()[2](ckpt, model, gray, multi, name)


def _decode_gray_today(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from mnistcnn.predict import _to_gray

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)
            img.load()
            return _to_gray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MnistcnnError(
            f"{name} is not an image Pillow can read ({type(e).__name__}); send PNG, JPEG, "
            "BMP, GIF, WebP or TIFF"
        ) from None


def _read_digits_today(ckpt, model, gray, name: str) -> dict:
    from mnistcnn.predict import predict_arrays, preprocess

    digit = preprocess(gray, name)
    probs = [round(float(v), 6) for v in predict_arrays(ckpt, digit[None], model)[0]]
    pred = int(np.argmax(probs))
    h, w = gray.shape
    return {
        "prediction": pred,
        "probabilities": probs,
        "text": str(pred),
        "digits": [{"prediction": pred, "probabilities": probs, "box": [0, 0, w, h]}],
        "inputs": digit[None],
    }
