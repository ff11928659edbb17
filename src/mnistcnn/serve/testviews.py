"""The test set as MyNet sees it, for the page's Map and Mistakes views: every test image's features projected
to 2-d, the images of one confusion-matrix cell, one image in detail with its nearest training images.

Usage: `map_view(loaded)` (`map_json`: the same, encoded once), `place(loaded, digit)`, `mistakes(loaded, true=4, pred=9)`,
`detail(loaded, index, features=True, neighbours=8)`, `pick(models, digit=7, n=10, seed=0)`.
Predictions come from the Model tab's own evaluation pass (`Loaded.test_pass`), so a cell's images are exactly
the confusion matrix's count. The features are the 2,304 values MyNet's linear layer reads (after both conv
blocks); the projection is PCA (its first two axes for the map, 64 for the neighbours' distances).
"""

from __future__ import annotations

import numpy as np
import torch

from mnistcnn.errors import MnistcnnError
from mnistcnn.serve.pictures import png_data_url

AXES = 64  # principal axes kept: the neighbours are found in this space (60,000 × 64 floats: 15 MB)
MOST = 100  # images per mistakes answer
MAX_NEIGHBOURS = 32


def features_of(loaded, digits: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) or float [0, 1] digits → MyNet's flatten features (N, 2304), float32, on the CPU."""
    from mnistcnn.generative.judge import features_and_probs

    return features_and_probs(loaded.ckpt, loaded.model, digits)[0]


def _pca(loaded) -> dict:
    """The test features' mean and first AXES principal axes (signs fixed: the largest weight positive, so that
    a restart draws the same map), the test set's codes and the first two axes' variance fractions."""
    seen = loaded.test_pass()
    f = features_of(loaded, seen["images"])
    mean = f.mean(0)
    with torch.random.fork_rng(devices=[]):  # pca_lowrank's random sketch: the same map every time
        torch.manual_seed(0)
        _, s, v = torch.pca_lowrank(f, q=min(AXES + 8, *f.shape), center=True, niter=4)
    v = v[:, :AXES]
    v = v * torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    codes = (f - mean) @ v
    total = ((f - mean) ** 2).sum() / max(1, len(f) - 1)
    explained = (s[:2] ** 2 / max(1, len(f) - 1) / total).tolist()
    return {"mean": mean, "axes": v, "codes": codes, "explained": explained}


def pca(loaded) -> dict:
    loaded.need("mynet", "the Map")
    return loaded.memo("pca", lambda: _pca(loaded))


def map_view(loaded) -> dict:
    """Every test image's place (its first two principal coordinates), label and prediction."""
    p, seen = pca(loaded), loaded.test_pass()
    xy = p["codes"][:, :2].numpy().round(3)
    return {
        "method": "pca",
        "explained": [round(e, 4) for e in p["explained"]],
        "n": len(xy),
        "x": xy[:, 0].tolist(),
        "y": xy[:, 1].tolist(),
        "label": seen["labels"].tolist(),
        "pred": seen["pred"].tolist(),
        "accuracy": float((seen["pred"] == seen["labels"]).mean()),
    }


def map_json(loaded) -> bytes:
    """`map_view` encoded once per checkpoint: FastAPI's encoder took ~50 ms a request over its 40,000 numbers."""
    import json

    return loaded.memo("map-json", lambda: json.dumps(map_view(loaded), separators=(",", ":")).encode())


def place(loaded, digit: np.ndarray) -> list[float]:
    """A 28×28 digit in [0, 1] placed in the map (the same projection as the test set's)."""
    p = pca(loaded)
    code = (features_of(loaded, digit[None]) - p["mean"]) @ p["axes"][:, :2]
    return [round(float(c), 3) for c in code[0]]


def _checked_digit(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= 9:
        raise MnistcnnError(f"{name} must be a digit 0-9; got {value}")


def mistakes(loaded, true: int, pred: int) -> dict:
    """The test images of confusion cell (true, pred), most confident first (at most MOST)."""
    loaded.need("mynet", "the Mistakes view")
    _checked_digit("true", true)
    _checked_digit("pred", pred)
    seen = loaded.test_pass()
    cell = np.flatnonzero((seen["labels"] == true) & (seen["pred"] == pred))
    conf = seen["probs"][cell, pred]
    order = cell[np.argsort(-conf, kind="stable")][:MOST]
    return {
        "true": true,
        "pred": pred,
        "count": len(cell),
        "images": [
            {
                "index": int(i),
                "png": png_data_url(seen["images"][i]),
                "confidence": round(float(seen["probs"][i, pred]), 4),
                "probabilities": [round(float(q), 4) for q in seen["probs"][i]],
            }
            for i in order
        ],
    }


def detail(loaded, index: int, features: bool = False, neighbours: int = 0) -> dict:
    """Test image `index`: its picture, label, MyNet's reading; with `features` its feature maps; with
    `neighbours` the K nearest training images in MyNet's feature space (the first ask reads them all)."""
    loaded.need("mynet", "the test-image view")
    seen = loaded.test_pass()
    n = len(seen["labels"])
    if not 0 <= index < n:
        raise MnistcnnError(f"index must be between 0 and {n - 1}; got {index}")
    if not 0 <= neighbours <= MAX_NEIGHBOURS:
        raise MnistcnnError(f"neighbours must be between 0 and {MAX_NEIGHBOURS}; got {neighbours}")
    image = seen["images"][index]
    out = {
        "index": index,
        "label": int(seen["labels"][index]),
        "png": png_data_url(image),
        "prediction": int(seen["pred"][index]),
        "probabilities": [round(float(q), 4) for q in seen["probs"][index]],
    }
    if features:
        from mnistcnn.explain import feature_maps
        from mnistcnn.serve import pictures

        out["features"] = pictures.features(*feature_maps(loaded.ckpt, loaded.model, image / 255.0))
    if neighbours:
        out["neighbours"] = _nearest(loaded, index, neighbours)
    return out


def _nearest(loaded, index: int, k: int) -> list[dict]:
    p = pca(loaded)
    images, labels = loaded.models.split(train=True)

    def codes() -> torch.Tensor:
        return (features_of(loaded, images) - p["mean"]) @ p["axes"]

    train = loaded.memo("train codes", codes)
    d = torch.cdist(p["codes"][index : index + 1], train)[0]
    k = min(k, len(d))
    dist, idx = torch.topk(d, k, largest=False)
    return [
        {
            "index": int(i),
            "label": int(labels[i]),
            "png": png_data_url(images[i]),
            "distance": round(float(x), 3),
        }
        for x, i in zip(dist, idx)
    ]


def pick(models, digit: int | None, n: int, seed: int) -> dict:
    """n test images (of `digit`, or any), drawn by `seed`: the page's "a random test digit" pickers."""
    _checked_digit("digit", digit)
    if not 1 <= n <= MOST:
        raise MnistcnnError(f"n must be between 1 and {MOST}; got {n}")
    images, labels = models.split(train=False)
    pool = np.flatnonzero(labels == digit) if digit is not None else np.arange(len(labels))
    if not len(pool):
        raise MnistcnnError(f"the test set has no image of the digit {digit}")
    chosen = np.random.default_rng(seed).choice(pool, size=min(n, len(pool)), replace=False)
    return {
        "images": [{"index": int(i), "label": int(labels[i]), "png": png_data_url(images[i])} for i in chosen]
    }
