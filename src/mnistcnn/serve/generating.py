"""The page's Generate view over the generative library (`mnistcnn generate` / `show`'s functions): samples, one
handwriting written as 0-9, morphs, the latent plane decoded point by point, latent arithmetic, a GAN's epochs.

Usage: `generate(loaded, digit=3, n=10, seed=0)`, `style(loaded, gray)`, `interpolate(loaded, a, b, steps)`,
`plane(loaded)`, `decode_at(loaded, u, v, digit)`, `arithmetic(loaded, a, b, c)`, `progress(run)`.
Every image is a 28×28 PNG data URL in MNIST polarity (white ink on black).
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import torch

from mnistcnn.errors import MnistcnnError
from mnistcnn.generative import pictures, sample
from mnistcnn.serve.pictures import png_data_url

MOST = 100  # images per generate answer
POINTS = 2000  # test codes drawn on the latent map
EXTENT = 3.0  # the plane's half-width, in spreads of the test codes
MAX_STEPS = 32


def _urls(digits: np.ndarray) -> list[str]:
    return [png_data_url(d) for d in digits]


def _digit(value, name: str = "digit") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise MnistcnnError(f"{name} must be a digit 0-9; got {value!r}")
    return value


def generate(loaded, digit: int | None, n: int, seed: int) -> dict:
    """n new digits from the prior; conditional kinds write `digit`, or 0-9 in turn when it is None."""
    kind = loaded.need("samples", "Generate")
    if not 1 <= n <= MOST:
        raise MnistcnnError(f"n must be between 1 and {MOST}; got {n}")
    if digit is not None and not kind.conditional:
        raise MnistcnnError(
            f"a {kind.name} draws digits it does not choose; leave digit out (a cvae or gan takes one)"
        )
    if digit is not None:
        _digit(digit)
    return {
        "images": _urls(sample.draw(kind, loaded.model, n, seed, digit)),
        "model": kind.name,
        "digit": digit,
        "seed": seed,
    }


def style(loaded, gray: np.ndarray) -> dict:
    """A digit (28×28 in [0, 1]) written as every digit 0-9 in its style (a cvae), and the digit it was read as."""
    kind = loaded.need("conditional", "Your handwriting")
    if kind.family != "autoencoder":
        raise MnistcnnError(
            f"{loaded.name} holds a {kind.name}; your handwriting needs a cvae (it has an encoder)"
        )
    digits, digit = sample.written_in_style(loaded.model, gray)
    return {"images": _urls(digits), "digit": digit, "input_png": png_data_url(gray)}


def digit_of_png(url: str, name: str) -> np.ndarray:
    """A picture sent as a data URL (or plain base64) → the 28×28 digit in [0, 1] the photo pipeline reads."""
    from mnistcnn.images import decode_picture, extract

    if not isinstance(url, str):
        raise MnistcnnError(f"{name}.png must be a string: a data URL of an image")
    body = url.split(",", 1)[1] if url.startswith("data:") else url
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise MnistcnnError(
            f"{name}.png is not base64 image data (send a data:image/png;base64,... URL)"
        ) from None
    return extract(decode_picture(data, name), False, name).digits[0]


def _source(loaded, src, name: str, test) -> tuple[np.ndarray | None, int | None]:
    """(28×28 digit in [0, 1] or None, its label or None) of one end of a morph."""
    if not isinstance(src, dict) or len(src) != 1:
        raise MnistcnnError(f'{name} must be one of {{"index": i}}, {{"png": data URL}} or {{"digit": d}}')
    ((key, value),) = src.items()
    if key == "digit":
        return None, _digit(value, f"{name}.digit")
    if key == "png":
        return digit_of_png(value, name), None
    if key == "index":
        images, labels = test()
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(images):
            raise MnistcnnError(f"{name}.index must be a test image 0..{len(images) - 1}; got {value!r}")
        return images[value] / 255.0, int(labels[value])
    raise MnistcnnError(f"{name} has no {key!r}; give index, png or digit")


def interpolate(loaded, a, b, steps: int, seed: int, test) -> dict:
    """The decoded straight path between two ends (test images, pictures; a GAN's two digits), and for the
    autoencoders the plain pixel cross-fade beside it. `test()` gives the test set when an end names one."""
    kind = loaded.need("latent", "Morph")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
        raise MnistcnnError(f"steps must be between 2 and {MAX_STEPS}; got {steps!r}")
    (xa, la), (xb, lb) = _source(loaded, a, "a", test), _source(loaded, b, "b", test)
    if kind.family == "generator":
        if xa is not None or xb is not None:
            raise MnistcnnError('a gan has no encoder: morph between two digits ({"digit": d} for a and b)')
        path = pictures.interpolate(kind, loaded.model, None, None, (la, lb), steps, seed)[1][1]
        return {"images": _urls(path), "pixels": [], "ends": _urls(path[[0, -1]])}
    if xa is None or xb is None:
        raise MnistcnnError(f"a {kind.name} morphs between two images: give index or png for a and b")
    ends = [(np.asarray(x) * 255).round().astype(np.uint8) for x in (xa, xb)]
    rows = pictures.interpolate(kind, loaded.model, *ends, (la, lb), steps)
    return {"images": _urls(rows[0][1]), "pixels": _urls(rows[1][1]), "ends": _urls(np.stack(ends))}


def _plane(loaded, images, labels) -> dict:
    kind, module = loaded.kind, loaded.model
    device = next(module.parameters()).device
    if kind.family == "generator":  # the noise: two seeded orthonormal directions, one unit each
        gen = torch.Generator(device=device).manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn((module.latent, 2), generator=gen, device=device))
        plane = {"centre": torch.zeros(module.latent, device=device), "dirs": q.T, "spread": torch.ones(2)}
        return {
            **plane,
            "points": {"x": [], "y": [], "label": []},
            "axes": "two random directions of the noise",
        }
    z, _, ys = pictures.latents_with_images(kind, module, images, labels, n=len(images))
    centre, dirs, spread = pictures.axes_of(z)
    uv = ((z - centre) @ dirs.T / spread.clamp_min(1e-6)).cpu().numpy()[:POINTS].round(3)
    axes = "z₁, z₂" if z.shape[1] == 2 else f"the first two principal axes of the {z.shape[1]}-d codes"
    points = {"x": uv[:, 0].tolist(), "y": uv[:, 1].tolist(), "label": np.asarray(ys)[:POINTS].tolist()}
    return {"centre": centre, "dirs": dirs, "spread": spread.to(device), "points": points, "axes": axes}


def plane(loaded, test) -> dict:
    """The latent plane the map shows, computed once per checkpoint: `test()` gives the test set."""
    loaded.need("latent", "the latent map")
    return loaded.memo("plane", lambda: _plane(loaded, *test()))


def plane_view(loaded, test) -> dict:
    p = plane(loaded, test)
    return {
        "axes": p["axes"],
        "extent": EXTENT,
        "points": p["points"],
        "conditional": loaded.kind.conditional,
    }


def decode_at(loaded, u: float, v: float, digit: int, test) -> dict:
    """The plane's point (u, v), in spreads of the test codes, decoded (a cvae or gan: as `digit`)."""
    p = plane(loaded, test)
    for name, t in (("u", u), ("v", v)):
        if not -EXTENT <= t <= EXTENT:  # NaN fails this too
            raise MnistcnnError(f"{name} must be between {-EXTENT:g} and {EXTENT:g}; got {t}")
    _digit(digit)
    kind, device = loaded.kind, p["centre"].device
    z = p["centre"] + u * p["spread"][0] * p["dirs"][0] + v * p["spread"][1] * p["dirs"][1]
    y = torch.tensor([digit], device=device) if kind.conditional else None
    return {"image": png_data_url(pictures.decode(kind, loaded.model, z[None], y)[0])}


def arithmetic(loaded, indices: tuple[int, int, int], test) -> dict:
    """decode(z_a − z_b + z_c) of three test images (a cvae decodes it as c's digit): "a thick 7 − a thin 7 + a
    thin 2" writes a thick 2."""
    kind = loaded.need("autoencoder", "Latent arithmetic")
    images, labels = test()
    for name, i in zip("abc", indices):
        if not 0 <= i < len(images):
            raise MnistcnnError(f"{name} must be a test image 0..{len(images) - 1}; got {i}")
    device = next(loaded.model.parameters()).device
    picked = np.stack([images[i] for i in indices])
    ys = torch.as_tensor([int(labels[i]) for i in indices], device=device)
    x = torch.from_numpy(picked.astype(np.float32) / 255).unsqueeze(1).to(device)
    z = pictures.encode_mean(kind, loaded.model, x, ys)
    result = pictures.decode(
        kind, loaded.model, (z[0] - z[1] + z[2])[None], ys[2:] if kind.conditional else None
    )
    return {"inputs": _urls(picked), "image": png_data_url(result[0]), "labels": ys.tolist()}


def progress(run) -> dict:
    """A GAN run's fixed-noise samples after each epoch (progress/epoch-NNN.png), as data URLs."""
    frames = pictures.progress_frames(run)
    return {"epochs": [e for e, _ in frames], "images": [png_data_url(a) for _, a in frames]}
