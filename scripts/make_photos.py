"""Synthetic phone photos of handwriting, made from real MNIST *test* digits (so none is training data): single
digits and numbers of 1–8 digits, on paper (black/blue/red/green ink, pencil; grain, ruled lines, a margin, a
table edge), a whiteboard (marker) or a blackboard (chalk), under uneven light, a vignette and a soft shadow,
slightly rotated, blurred and JPEG-compressed. Also scores a checkpoint on such a set.

Usage:
  python scripts/make_photos.py --data-dir ../shared/data --out tests/data/photos      # write the set
  python scripts/make_photos.py --check runs/R/last.pt --out tests/data/photos           # score a checkpoint

The set: OUT/single-NNN.jpg, OUT/number-NNN.jpg and OUT/labels.json, {"file": {"text": "2026", "scene": ...,
"mnist": [test-set indices]}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

INKS = {
    "black": (25, 25, 30),
    "blue": (35, 50, 150),
    "navy": (20, 30, 90),
    "red": (170, 30, 35),
    "green": (25, 110, 55),
    "pencil": (95, 95, 100),
}


def stroke(digit: np.ndarray, height: int, rng) -> np.ndarray:
    """A 28×28 MNIST digit → ink coverage (float32 in [0, 1]) whose digit is `height` px tall: upscaled smoothly,
    its edge sharpened like a pen's, its width varied like different pens."""
    s = max(28, round(28 * height / 20))
    big = cv2.resize(digit.astype(np.float32) / 255, (s, s), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), s / 90)
    alpha = np.clip((big - 0.3) / 0.3, 0, 1)
    k = round(rng.uniform(-0.35, 0.5) * s / 28)  # thinner (ballpoint) or thicker (marker) than MNIST
    if k:
        el = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(k) + 1, abs(k) + 1))
        alpha = cv2.dilate(alpha, el) if k > 0 else cv2.erode(alpha, el)
    rows, cols = np.nonzero(alpha > 0.05)
    return alpha[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] if rows.size else alpha


def ground(h: int, w: int, scene: str, rng) -> tuple[np.ndarray, tuple]:
    """The surface (float32 RGB 0–255) and the ink colour for a scene."""
    if scene == "blackboard":
        base, ink = np.array([45, 60, 50]) * rng.uniform(0.7, 1.2), (225, 228, 220)
    elif scene == "whiteboard":
        base, ink = np.array([238, 240, 242]), INKS[str(rng.choice(["black", "blue", "red", "green"]))]
    else:
        base, ink = np.array([242, 238, 228]) * rng.uniform(0.93, 1.0), INKS[str(rng.choice(list(INKS)))]
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2)
    img += (grain * rng.uniform(3, 8))[..., None]
    if scene == "paper" and rng.random() < 0.5:  # ruled paper, sometimes with a red margin
        gap, y = rng.uniform(0.08, 0.14) * h, rng.uniform(0, 10)
        while y < h:
            cv2.line(img, (0, int(y)), (w, int(y)), (150, 180, 225), int(rng.integers(1, 3)))
            y += gap
        if rng.random() < 0.4:
            x = int(rng.uniform(0.04, 0.12) * w)
            cv2.line(img, (x, 0), (x, h), (210, 120, 120), 2)
    return img, ink


def put(img: np.ndarray, alpha: np.ndarray, x: int, y: int, ink, scene: str, pencil: bool, rng) -> None:
    """Lay ink (coverage `alpha`) at (x, y); pencil and chalk are patchy."""
    h, w = alpha.shape
    a = alpha.copy()
    if pencil or scene == "blackboard":
        a *= np.clip(rng.normal(0.75, 0.2, a.shape), 0.2, 1).astype(np.float32)
        a = cv2.GaussianBlur(a, (3, 3), 0)
    region = img[y : y + h, x : x + w]
    region[:] = region * (1 - a[..., None]) + np.array(ink, np.float32) * a[..., None]


def light(img: np.ndarray, scene: str, rng) -> np.ndarray:
    """A table edge beside the paper, specks, uneven light, a vignette, a soft shadow, rotation, blur, noise."""
    h, w = img.shape[:2]
    if scene == "paper" and rng.random() < 0.25:  # the paper ends before the photo does
        side, depth = int(rng.integers(4)), int(rng.uniform(0.03, 0.08) * min(h, w))
        edge = [np.s_[:depth, :], np.s_[-depth:, :], np.s_[:, :depth], np.s_[:, -depth:]][side]
        img[edge] = np.array([90, 70, 55]) * rng.uniform(0.6, 1.1)
    for _ in range(int(rng.integers(0, 4))):  # dust and pen specks
        cv2.circle(
            img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(1, 3)), (60, 60, 60), -1
        )
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = ((xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang)) * rng.uniform(0.1, 0.45)
    r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5
    gain = (1 + ramp) * (1 - rng.uniform(0.1, 0.4) * r2)
    if rng.random() < 0.5:  # the phone's or a hand's soft shadow over part of the picture
        shadow = np.zeros((h, w), np.float32)
        centre = (int(rng.uniform(-0.2, 1.2) * w), int(rng.uniform(-0.2, 1.2) * h))
        axes = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.7) * h))
        cv2.ellipse(shadow, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        gain *= 1 - rng.uniform(0.2, 0.45) * cv2.GaussianBlur(shadow, (0, 0), 0.05 * min(h, w))
    img = img * gain[..., None] * rng.uniform(0.8, 1.05)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-6, 6), 1.0)
    img = cv2.warpAffine(img, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.3))
    img += rng.normal(0, rng.uniform(1.5, 4), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def scene_of(rng) -> str:
    return str(rng.choice(["paper"] * 7 + ["whiteboard"] * 2 + ["blackboard"] * 2))


def photo(digits: list[np.ndarray], rng, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Digits written left to right with natural spacing, photographed: (BGR uint8 image, scene)."""
    w, h = size
    scene = scene_of(rng)
    img, ink = ground(h, w, scene, rng)
    pencil = scene == "paper" and ink == INKS["pencil"]
    n = len(digits)
    height = min(rng.uniform(0.35, 0.6) * h, 0.8 * w / (n * 0.95))
    alphas = [stroke(d, int(height * rng.uniform(0.9, 1.1)), rng) for d in digits]
    gaps = [
        height * (rng.uniform(0.0, 0.06) if rng.random() < 0.1 else rng.uniform(0.1, 0.35)) for _ in alphas
    ]
    total = sum(a.shape[1] for a in alphas) + sum(gaps[:-1])
    x = int(rng.uniform(0.1, 0.9) * (w - total)) if total < w else 0
    base = int(rng.uniform(0.25, 0.75) * (h - height) + height)
    for a, g in zip(alphas, gaps):
        y = int(np.clip(base - a.shape[0] + rng.normal(0, 0.03) * height, 0, h - a.shape[0]))
        put(img, a, min(x, w - a.shape[1]), y, ink, scene, pencil, rng)
        x += int(a.shape[1] + g)
    return cv2.cvtColor(light(img, scene, rng), cv2.COLOR_RGB2BGR), scene


def make(data_dir: Path, out: Path, singles: int, numbers: int, seed: int) -> None:
    from mnistcnn import data

    images, labels = data.load_split(data_dir, train=False)
    images, labels = images.numpy(), labels.numpy()
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for k in range(singles + numbers):
        n = 1 if k < singles else int(rng.integers(1, 9))
        picks = [int(i) for i in rng.choice(len(images), n, replace=False)]
        size = (480, 360) if n == 1 and rng.random() < 0.6 else (360, 480) if n == 1 else (800, 320)
        img, scene = photo([images[i] for i in picks], rng, size)
        name = f"single-{k:03d}.jpg" if k < singles else f"number-{k - singles:03d}.jpg"
        cv2.imwrite(str(out / name), img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 88))])
        index[name] = {"text": "".join(str(labels[i]) for i in picks), "scene": scene, "mnist": picks}
    (out / "labels.json").write_text(json.dumps(index, indent=1) + "\n")
    mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {singles} single digits and {numbers} numbers to {out} ({mb:.2f} MB)")


def check(ckpt_path: Path, out: Path) -> dict:
    """Score a checkpoint on a set: exact singles and exact numbers, and the files it got wrong."""
    from mnistcnn.checkpoint import load_model
    from mnistcnn.images import ImageError, load_gray
    from mnistcnn.predict import read_digits

    ckpt, model = load_model(ckpt_path, "cpu")
    labels = json.loads((out / "labels.json").read_text())
    right = {"single": [0, 0], "number": [0, 0]}
    wrong = []
    for name, want in sorted(labels.items()):
        kind = name.split("-")[0]
        try:
            got = read_digits(ckpt, model, load_gray(out / name), multi=kind == "number", name=name)["text"]
        except ImageError as e:
            got = f"error: {e}"
        right[kind][0] += got == want["text"]
        right[kind][1] += 1
        if got != want["text"]:
            wrong.append(f"{name} ({want['scene']}): {want['text']} read as {got}")
    return {"single": right["single"], "number": right["number"], "wrong": wrong}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--data-dir", type=Path, default=ROOT.parent / "shared" / "data", help="MNIST (torchvision layout)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "photos", help="the set's folder")
    p.add_argument("--singles", type=int, default=60)
    p.add_argument("--numbers", type=int, default=40)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--check", type=Path, metavar="CKPT", help="score this checkpoint on the set instead")
    a = p.parse_args()
    if a.check:
        r = check(a.check, a.out)
        print("\n".join(r["wrong"]))
        for kind in ("single", "number"):
            ok, n = r[kind]
            print(f"{kind}: {ok}/{n} exact ({100 * ok / max(n, 1):.1f} %)")
        return
    make(a.data_dir, a.out, a.singles, a.numbers, a.seed)


if __name__ == "__main__":
    main()
