"""An uploaded image → what MyNet reads in it, with the input it saw and, on request, its feature maps.

Usage: `answer = read_upload(loaded, body_bytes, "photo.jpg", multi=False, features=True, budget=PixelBudget())`.
The image work is the library's (`images.decode_gray`, `predict.read_digits`), as for `mnistcnn predict`.
"""

from __future__ import annotations

import contextlib
import threading

from mnistcnn.errors import MnistcnnError, TooManyPixels, UnreadableImage
from mnistcnn.images import MAX_PIXELS
from mnistcnn.serve import pictures


class UnsupportedImage(MnistcnnError):
    status = 415


class TooLarge(MnistcnnError):
    status = 413


class Busy(MnistcnnError):
    status = 503


class PixelBudget:
    """A cap on the pixels being decoded at once, whatever the number of requests or cores: a request holds its
    image's pixel count (from the header) while it decodes, and waits up to `wait` seconds
    for room (then 503). One image is always admitted when nothing else is held (it is under the pixel limit).
    Memory per pixel is ~25 bytes at the peak (the decoded RGB, its gray copy, the float32 working copy)."""

    def __init__(self, pixels: int = 2 * MAX_PIXELS, wait: float = 10.0) -> None:
        self.pixels, self.wait, self.held = pixels, wait, 0
        self._room = threading.Condition()

    @contextlib.contextmanager
    def admit(self, n: int):
        n = min(n, self.pixels)
        with self._room:
            if not self._room.wait_for(lambda: self.held + n <= self.pixels, self.wait):
                raise Busy(
                    f"the server is reading {self.held / 1e6:.0f} MP of other images; try again in a moment"
                )
            self.held += n
        try:
            yield
        finally:
            with self._room:
                self.held -= n
                self._room.notify_all()


def read_upload(
    loaded,
    data: bytes,
    name: str,
    multi: bool = False,
    features: bool = False,
    budget: PixelBudget | None = None,
    place: bool = False,
) -> dict:
    """The answer of POST /api/predict: prediction, probabilities, text, digits, input_png (+ features; + the
    first digit's place on the test-set map with `place`)."""
    loaded.need("mynet", "reading a digit")
    if not data:
        raise MnistcnnError(
            "the request has no image: send the image bytes (Content-Type image/*) or a "
            "multipart field named 'image'"
        )
    from mnistcnn.images import decode_picture
    from mnistcnn.predict import read_digits

    # the pixel limit is checked from the header, before decoding; the budget is held while it decodes (at
    # reduced size when large: what the reading needs afterwards is small)
    admit = budget.admit if budget is not None else None
    picture = _refused(lambda d, n: decode_picture(d, n, admit), data, name)
    result = read_digits(loaded.ckpt, loaded.model, picture, multi, name)
    inputs = result.pop("inputs")
    result["input_png"] = pictures.png_data_url(inputs[0] if len(inputs) == 1 else pictures.strip(inputs))
    if features:
        from mnistcnn.explain import feature_maps

        result["features"] = pictures.features(*feature_maps(loaded.ckpt, loaded.model, inputs[0]))
    if place:
        from mnistcnn.serve.testviews import place as placed

        result["map"] = placed(loaded, inputs[0])
    return result


def _refused(decode, data: bytes, name: str):
    """`decode(data, name)` with its errors as the web answers them: 413 over the pixel limit, 422 for a file
    the decoder failed on, 415 for the rest (not an image, not a promised format)."""
    try:
        return decode(data, name)
    except (TooManyPixels, UnreadableImage, Busy):
        raise
    except MnistcnnError as e:
        raise UnsupportedImage(str(e)) from None
