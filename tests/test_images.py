"""images: people's pictures → MNIST-style digits, found where they are on photos of paper and boards."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mnistcnn import data, images
from mnistcnn.images import ImageError, decode_gray, extract, load_gray

PHOTOS = Path(__file__).parent / "data" / "photos"


@pytest.fixture(scope="module")
def mnist_digits(mnist_root):
    imgs, labels = data.load_split(mnist_root, train=False)
    return imgs.numpy(), labels.numpy()


def ink_of(digit: np.ndarray, height: int) -> np.ndarray:
    """An MNIST digit as pen ink (coverage 0..1) whose digit is about `height` px tall, cropped to the ink."""
    s = round(28 * height / 20)
    a = np.clip(
        (cv2.resize(digit.astype(np.float32) / 255, (s, s), interpolation=cv2.INTER_CUBIC) - 0.3) / 0.3, 0, 1
    )
    rows, cols = np.nonzero(a > 0.05)
    return a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def scene(h, w, inks, at, light_on_dark=False, lines=False, shade=False, seed=0) -> np.ndarray:
    """A gray photo: paper (or a dark board) under a light gradient and vignette, optional ruled lines and a soft
    shadow, with each ink laid at its (x, y)."""
    rng = np.random.default_rng(seed)
    ground, ink = (0.22, 0.9) if light_on_dark else (0.92, 0.12)
    img = np.full((h, w), ground, np.float32)
    if lines:
        for y in range(h // 9, h, h // 9):
            cv2.line(img, (0, y), (w, y + h // 40), 0.7, 1)  # slightly slanted ruling
    for a, (x, y) in zip(inks, at):
        region = img[y : y + a.shape[0], x : x + a.shape[1]]
        region[:] = region * (1 - a) + ink * a
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gain = (0.75 + 0.3 * xx / w) * (1 - 0.3 * ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2))
    if shade:
        gain *= 1 - 0.35 * cv2.GaussianBlur((xx < 0.4 * w).astype(np.float32), (0, 0), 0.06 * w)
    img = cv2.GaussianBlur(img * gain, (0, 0), 0.8) + rng.normal(0, 0.015, (h, w)).astype(np.float32)
    return np.clip(img, 0, 1)


def cross(h, w) -> np.ndarray:
    """Two strokes corner to corner: ink that touches every border."""
    a = np.zeros((h, w), np.float32)
    cv2.line(a, (0, 0), (w - 1, h - 1), 1.0, 12)
    cv2.line(a, (0, h - 1), (w - 1, 0), 1.0, 12)
    return a


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def truth(a, x, y):
    """The ink's box once `a` is laid at (x, y)."""
    rows, cols = np.nonzero(a > 0.05)
    return (x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1)


@pytest.mark.parametrize(
    "effects",
    [{}, {"lines": True}, {"shade": True}, {"light_on_dark": True}, {"lines": True, "shade": True}],
    ids=["plain", "ruled", "shadow", "blackboard", "ruled+shadow"],
)
def test_one_digit_is_found_under_photo_effects(mnist_digits, effects):
    digit = ink_of(mnist_digits[0][3], 160)
    photo = scene(360, 480, [digit], [(200, 90)], **effects)
    found = extract(photo, name="photo")
    assert found.digits.shape == (1, 28, 28) and found.mask.shape == photo.shape
    assert iou(found.boxes[0], truth(digit, 200, 90)) >= 0.85, found.boxes
    assert found.mask.sum() <= 1.6 * (digit > 0.5).sum()  # the lines, shadow and light are not ink
    out = found.digits[0]
    rows, cols = np.nonzero(out > 0.2)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - 14) < 1 and abs((xs * out).sum() / out.sum() - 14) < 1


def test_a_digit_in_pieces_stays_one_digit():
    five = np.zeros((120, 80), np.float32)
    cv2.line(five, (15, 10), (15, 55), 1.0, 9)  # the stem
    cv2.ellipse(five, (38, 80), (28, 30), 0, -120, 150, 1.0, 9)  # the belly
    cv2.line(five, (32, 8), (70, 8), 1.0, 9)  # the flag, not touching the stem
    photo = scene(300, 400, [five], [(150, 90)])
    for multi in (False, True):
        found = extract(photo, multi=multi)
        assert len(found.boxes) == 1 and iou(found.boxes[0], truth(five, 150, 90)) >= 0.8, found.boxes


def test_multi_reads_left_to_right_and_splits_touching_digits(mnist_digits):
    picks = [ink_of(mnist_digits[0][i], 90) for i in (0, 1, 2, 3, 4)]
    xs, x = [], 40
    for k, a in enumerate(picks):
        xs.append(x)
        x += a.shape[1] + (-2 if k == 2 else 25)  # the 3rd and 4th digits touch
    found = extract(scene(260, x + 40, picks, [(x, 80) for x in xs], lines=True), multi=True)
    assert len(found.boxes) == 5 and found.digits.shape == (5, 28, 28)
    assert [b[0] for b in found.boxes] == sorted(b[0] for b in found.boxes)
    for box, a, x in zip(found.boxes, picks, xs):
        assert iou(box, truth(a, x, 80)) >= 0.6, (box, truth(a, x, 80))


def test_more_than_eight_digits_is_one_line_error(mnist_digits):
    picks = [ink_of(mnist_digits[0][i], 50) for i in range(9)]
    xs = [20 + 55 * k for k in range(9)]
    with pytest.raises(ImageError, match="holds 9 digit-like marks; --multi reads numbers of 1 to 8 digits"):
        extract(scene(150, 540, picks, [(x, 50) for x in xs]), multi=True, name="long.png")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: scene(300, 400, [], []), "shows no digit"),
        (lambda: scene(300, 400, [cross(300, 400)], [(0, 0)]), "runs into the image's edges"),
        (lambda: scene(300, 400, [np.ones((4, 60), np.float32)], [(100, 150)]), "no digit-like mark"),
        (lambda: np.full((1, 50), 0.5), "50×1 pixels"),
    ],
    ids=["blank-page", "ink-on-every-border", "only-a-dash", "one-row"],
)
def test_pictures_without_a_digit_are_one_line_errors(make, message):
    with pytest.raises(ImageError, match=message) as e:
        extract(make(), name="pic")
    assert "\n" not in str(e.value) and str(e.value).startswith("pic")


def test_a_12_megapixel_photo_is_read_on_a_small_copy(mnist_digits):
    digit = ink_of(mnist_digits[0][0], 1500)
    photo = scene(3000, 4000, [digit], [(1600, 700)], lines=True)
    found = extract(photo)
    assert found.mask.shape == (3000, 4000)
    assert iou(found.boxes[0], truth(digit, 1600, 700)) >= 0.85, found.boxes


def test_bytes_and_files_read_the_same(tmp_path):
    Image.fromarray(np.uint8(scene(60, 80, [], []) * 255)).save(tmp_path / "a.png")
    assert np.array_equal(
        decode_gray((tmp_path / "a.png").read_bytes(), "a.png"), load_gray(tmp_path / "a.png")
    )
    with pytest.raises(ImageError, match="upload is empty"):
        decode_gray(b"")
    with pytest.raises(ImageError, match="not an image"):
        decode_gray(b"GIF89a nonsense", "x.gif")


def digits_found(name: str) -> int:
    try:
        return len(extract(load_gray(PHOTOS / name), multi=name.startswith("number"), name=name).boxes)
    except ImageError:
        return 0


def test_committed_photos_are_segmented_into_their_digits():
    """The committed set (scripts/make_photos.py): without a model, the digit count per photo is right."""
    labels = json.loads((PHOTOS / "labels.json").read_text())
    assert sum(f.stat().st_size for f in PHOTOS.iterdir()) < 2_000_000 and len(labels) >= 90
    right = sum(digits_found(name) == len(want["text"]) for name, want in labels.items())
    assert right >= 0.95 * len(labels), f"{right} of {len(labels)}"


def test_expand_lists_folders_of_images(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    assert [p.name for p in images.expand([tmp_path])] == ["a.JPG", "b.png"]
    with pytest.raises(ImageError, match="holds no image files"):
        images.expand([tmp_path / "empty"])
