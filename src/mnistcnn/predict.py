"""The model side of reading people's digits: MNIST-style 28×28 inputs (from `mnistcnn.images`) → predictions.

Usage: `read_digits(ckpt, model, load_gray(Path("2026.jpg")), multi=True)["text"]` → "2026";
`predict_arrays(ckpt, digits)` → (N, 10) probabilities.
"""

from __future__ import annotations

import numpy as np

from mnistcnn.images import Extraction, extract


def model_input(ckpt: dict, model, digits: np.ndarray):
    """(N, 28, 28) digits in [0, 1] → (N, 1, 28, 28) float tensor on the model's device, normalised the way the
    checkpoint was trained."""
    import torch

    from mnistcnn.checkpoint import normalization
    from mnistcnn.data import normalize

    mean, std = normalization(ckpt)
    dev = next(model.parameters()).device
    return normalize(torch.from_numpy(np.asarray(digits, dtype=np.float32)).unsqueeze(1).to(dev), mean, std)


def predict_arrays(ckpt: dict, digits: np.ndarray, model=None) -> np.ndarray:
    """(N, 28, 28) digits in [0, 1] → (N, 10) probabilities, normalised as the checkpoint was trained.

    `model`: the checkpoint's MyNet (on any device); rebuilt on the CPU from `ckpt` when not given."""
    import torch

    from mnistcnn.checkpoint import model_from_checkpoint

    model = model if model is not None else model_from_checkpoint(ckpt)
    with torch.inference_mode():
        return torch.softmax(model(model_input(ckpt, model, digits)).float(), dim=1).cpu().numpy()


def read_digits(ckpt: dict, model, gray: np.ndarray, multi: bool = False, name: str = "image") -> dict:
    """A gray picture (H, W) in [0, 1] → what it says: one digit, or with `multi` a number of 1–8 digits.

    Returns {"prediction": the digit (multi: int(text)), "probabilities": 10 floats (multi: None), "text",
    "digits": [{"prediction", "probabilities", "box": [x0, y0, x1, y1]}, ...], "inputs": (N, 28, 28) array};
    probabilities are rounded to 6 decimals. ImageError when no digit is found."""
    return read_extraction(ckpt, model, extract(gray, multi, name), multi)


def read_extraction(ckpt: dict, model, found: Extraction, multi: bool = False) -> dict:
    """`read_digits` for digits already extracted (the CLI keeps the Extraction to draw it)."""
    probs = predict_arrays(ckpt, found.digits, model)
    rows = [
        {"prediction": int(q.argmax()), "probabilities": [round(float(v), 6) for v in q], "box": list(box)}
        for q, box in zip(probs, found.boxes)
    ]
    text = "".join(str(r["prediction"]) for r in rows)
    return {
        "prediction": int(text) if multi else rows[0]["prediction"],
        "probabilities": None if multi else rows[0]["probabilities"],
        "text": text,
        "digits": rows,
        "inputs": found.digits,
    }
