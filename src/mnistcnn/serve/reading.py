"""An uploaded image → what MyNet reads in it, with the input it saw and, on request, its feature maps.

Usage: `answer = read_upload(loaded, body_bytes, "photo.jpg", multi=False, features=True)`.
The image work is the library's (`images.decode_gray`, `predict.read_digits`), as for `mnistcnn predict`.
"""

from __future__ import annotations

from mnistcnn.errors import MnistcnnError, TooManyPixels
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
    from mnistcnn.images import decode_gray
    from mnistcnn.predict import read_digits

    try:
        gray = decode_gray(data, name)  # the pixel limit is checked from the header, before decoding
    except TooManyPixels as e:
        raise TooLarge(str(e)) from None
    except MnistcnnError as e:
        raise UnsupportedImage(str(e)) from None
    result = read_digits(loaded.ckpt, loaded.model, gray, multi, name)
    inputs = result.pop("inputs")
    result["input_png"] = pictures.png_data_url(inputs[0] if len(inputs) == 1 else pictures.strip(inputs))
    if features:
        from mnistcnn.explain import feature_maps

        result["features"] = pictures.features(*feature_maps(loaded.ckpt, loaded.model, inputs[0]))
    return result
