"""predict: user images prepared like MNIST digits, robust to how people draw and photograph them; --multi reads
numbers; the committed photo set is read as well as the issue asks (slow: trains the fast recipe)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnistcnn import data, images, predict
from mnistcnn.cli import app
from mnistcnn.images import extract, load_gray

PHOTOS = Path(__file__).parent / "data" / "photos"

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt_path(train_run, tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("predict") / "run", epochs=3) / "last.pt"


def user_style(digit: np.ndarray, k: int) -> Image.Image:
    """A test digit as a person might supply it: upscaled, dark ink on white, off-centre on a larger canvas."""
    f = 4 + k % 5
    big = Image.fromarray(255 - digit).resize((28 * f, 28 * f), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (28 * f + 60 + k % 37, 28 * f + 40 + k % 23), 255)
    canvas.paste(big, ((k * 7) % 55, (k * 13) % 35))
    return canvas.convert("RGB") if k % 3 == 0 else canvas


def test_predictions_survive_user_style_rendering(ckpt_path, mnist_root, tmp_path):
    from mnistcnn import checkpoint

    images, _ = data.load_split(mnist_root, train=False)
    digits = images[:200].numpy()
    ckpt = checkpoint.load(ckpt_path)
    direct = predict.predict_arrays(ckpt, digits / 255.0).argmax(1)
    prepared = []
    for k, d in enumerate(digits):
        path = tmp_path / f"d{k}.{'jpg' if k % 4 == 1 else 'png'}"
        user_style(d, k).save(path, quality=95) if path.suffix == ".jpg" else user_style(d, k).save(path)
        prepared.append(extract(load_gray(path)).digits[0])
    via_files = predict.predict_arrays(ckpt, np.stack(prepared)).argmax(1)
    agree = (via_files == direct).mean()
    assert agree >= 0.95, f"only {agree:.1%} agree"


def test_cli_predict_text_json_and_show_input(ckpt_path, mnist_root, tmp_path):
    images, labels = data.load_split(mnist_root, train=False)
    for k in range(3):
        user_style(images[k].numpy(), k).save(tmp_path / f"digit{k}.png")
    result = runner.invoke(
        app,
        [
            "predict",
            str(ckpt_path),
            str(tmp_path),
            "--top-k",
            "2",
            "--show-input",
            str(tmp_path / "seen.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("digit") == 3 and (tmp_path / "seen.png").stat().st_size > 10_000
    result = runner.invoke(app, ["predict", str(ckpt_path), str(tmp_path / "digit0.png"), "--json"])
    rows = json.loads(result.output)
    assert len(rows) == 1 and set(rows[0]) == {"path", "prediction", "probabilities"}
    assert abs(sum(rows[0]["probabilities"]) - 1) < 1e-4 and rows[0]["prediction"] == int(labels[0])


def raw(path, payload: bytes):
    path.write_bytes(payload)
    return path


def write(path, mode, size, color, **save):
    Image.new(mode, size, color).save(path, **save)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: raw(p.with_suffix(".png"), b"not an image"), "not an image"),
        (lambda p: raw(p.with_suffix(".png"), b""), "is empty"),
        (lambda p: raw(p.with_suffix(".png"), b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "not an image"),
        (lambda p: write(p.with_suffix(".png"), "L", (1, 1), 0), "1×1 pixels"),
        (lambda p: write(p.with_suffix(".png"), "L", (64, 64), 255), "shows no digit"),
        (lambda p: write(p.with_suffix(".png"), "RGB", (64, 64), (40, 90, 200)), "shows no digit"),
        (lambda p: p / "missing.png", "does not exist"),
    ],
)
def test_bad_images_are_one_line_errors(ckpt_path, tmp_path, make, message):
    path = make(tmp_path / "img")
    result = runner.invoke(app, ["predict", str(ckpt_path), str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def digit_image(mode: str) -> Image.Image:
    canvas = Image.new("L", (80, 80), 255)
    canvas.paste(Image.new("L", (10, 50), 0), (35, 15))  # a dark "1"
    return canvas.convert(mode)


def test_unusual_but_valid_images_are_read(tmp_path):
    rgba = digit_image("RGBA")
    rgba.putalpha(Image.new("L", (80, 80), 255))
    rgba.save(tmp_path / "rgba.png")
    transparent = Image.new("RGBA", (80, 80), (0, 0, 0, 0))  # ink only where alpha is set
    transparent.paste(Image.new("RGBA", (10, 50), (0, 0, 0, 255)), (35, 15))
    transparent.save(tmp_path / "transparent.png")
    digit_image("CMYK").save(tmp_path / "cmyk.jpg")
    sixteen = np.asarray(digit_image("L"), dtype=np.uint16) * 257
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    digit_image("P").save(tmp_path / "palette.gif")
    digit_image("L").save(tmp_path / "tiff.tiff")
    for name in ("rgba.png", "transparent.png", "cmyk.jpg", "sixteen.png", "palette.gif", "tiff.tiff"):
        out = extract(load_gray(tmp_path / name), name=name).digits[0]
        assert out.shape == (28, 28) and out.max() > 0.5, name
        rows, cols = np.nonzero(out > 0.2)
        assert rows.max() - rows.min() > cols.max() - cols.min(), name  # the tall stroke stays tall


def test_huge_images_are_refused(tmp_path, monkeypatch):
    path = write(tmp_path / "big.png", "L", (300, 300), 255)
    monkeypatch.setattr(images, "MAX_PIXELS", 200 * 200)
    with pytest.raises(images.ImageError, match="over the"):
        load_gray(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # Pillow's own decompression-bomb guard
    with pytest.raises(images.ImageError, match="not an image Pillow can read"):
        load_gray(path)


def number_photo(digits: list[np.ndarray], gap: int = 30) -> Image.Image:
    """Test digits written left to right, dark on a light page."""
    row = np.concatenate([np.pad(255 - d, ((0, 0), (0, gap)), constant_values=255) for d in digits], axis=1)
    page = Image.fromarray(row.astype(np.uint8)).resize((row.shape[1] * 5, 28 * 5), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (page.width + 120, page.height + 100), 255)
    canvas.paste(page, (60, 50))
    return canvas


def test_cli_multi_reads_a_number(ckpt_path, mnist_root, tmp_path):
    images_, labels = data.load_split(mnist_root, train=False)
    picks = [k for k in range(40) if int(labels[k]) in (2, 0, 6)][:4]  # digits the small model reads well
    want = "".join(str(int(labels[k])) for k in picks)
    number_photo([images_[k].numpy() for k in picks]).save(tmp_path / "number.png")
    seen = str(tmp_path / "seen.png")
    args = [
        "predict",
        str(ckpt_path),
        str(tmp_path / "number.png"),
        "--multi",
        "--json",
        "--show-input",
        seen,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output.splitlines()[0])
    assert set(row) == {"path", "prediction", "probabilities", "text", "digits"}
    assert row["text"] == want and row["prediction"] == int(want) and row["probabilities"] is None
    xs = [d["box"][0] for d in row["digits"]]
    assert xs == sorted(xs) and all(abs(sum(d["probabilities"]) - 1) < 1e-4 for d in row["digits"])
    assert (tmp_path / "seen.png").stat().st_size > 10_000
    result = runner.invoke(app, ["predict", str(ckpt_path), str(tmp_path / "number.png"), "--multi"])
    assert result.exit_code == 0 and result.output.startswith(f"{tmp_path / 'number.png'}: {want} (")
    assert result.output.count("%") == len(want)


def test_cli_multi_refuses_more_than_eight_digits(ckpt_path, mnist_root, tmp_path):
    images_, _ = data.load_split(mnist_root, train=False)
    number_photo([images_[k].numpy() for k in range(9)]).save(tmp_path / "long.png")
    result = runner.invoke(app, ["predict", str(ckpt_path), str(tmp_path / "long.png"), "--multi"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'long.png'} holds 9 digit-like marks; --multi reads numbers of 1 to 8 digits "
        "(crop the photo to one number)"
    ]


def test_read_digits_shape_of_the_answer(ckpt_path):
    from mnistcnn import checkpoint

    ckpt, model = checkpoint.load_model(ckpt_path, "cpu")
    gray = load_gray(PHOTOS / "single-000.jpg")
    one = predict.read_digits(ckpt, model, gray, name="single-000.jpg")
    assert (
        isinstance(one["prediction"], int)
        and len(one["probabilities"]) == 10
        and one["text"] == str(one["prediction"])
    )
    assert one["inputs"].shape == (1, 28, 28) and one["digits"][0]["probabilities"] == one["probabilities"]
    json.dumps({k: v for k, v in one.items() if k != "inputs"})  # plain Python types
    many = predict.read_digits(ckpt, model, load_gray(PHOTOS / "number-000.jpg"), multi=True)
    assert many["probabilities"] is None and many["prediction"] == int(many["text"])
    assert len(many["digits"]) == len(many["text"]) == len(many["inputs"])


@pytest.mark.slow
def test_fast_recipe_reads_the_photo_set(fast_recipe_run):
    """The issue's bar on the committed synthetic phone photos (scripts/make_photos.py, MNIST *test* digits):
    >= 95 % of single digits and >= 90 % of numbers exact with a checkpoint of the fast recipe."""
    from mnistcnn import checkpoint

    ckpt, model = checkpoint.load_model(fast_recipe_run[0] / "last.pt", "cpu")
    labels = json.loads((PHOTOS / "labels.json").read_text())
    right = {"single": [], "number": []}
    for name, want in sorted(labels.items()):
        kind = name.split("-")[0]
        try:
            got = predict.read_digits(
                ckpt, model, load_gray(PHOTOS / name), multi=kind == "number", name=name
            )["text"]
        except images.ImageError:
            got = None
        right[kind].append(got == want["text"])
    assert np.mean(right["single"]) >= 0.95 and len(right["single"]) >= 50, right
    assert np.mean(right["number"]) >= 0.90 and len(right["number"]) >= 30, right
