"""predict: user images prepared like MNIST digits, robust to how people draw and photograph them."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnistcnn import data, predict
from mnistcnn.cli import app

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
        prepared.append(predict.preprocess(predict.load_gray(path)))
    via_files = predict.predict_arrays(ckpt, np.stack(prepared)).argmax(1)
    agree = (via_files == direct).mean()
    assert agree >= 0.95, f"only {agree:.1%} agree"


def test_preprocess_matches_mnist_geometry(mnist_root):
    images, _ = data.load_split(mnist_root, train=False)
    digit = images[0].numpy()
    out = predict.preprocess(1.0 - digit / 255.0)  # dark on light: inverted back
    rows, cols = np.nonzero(out > 0.2)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - 14) < 1 and abs((xs * out).sum() / out.sum() - 14) < 1


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
        out = predict.preprocess(predict.load_gray(tmp_path / name), name)
        assert out.shape == (28, 28) and out.max() > 0.5, name
        rows, cols = np.nonzero(out > 0.2)
        assert rows.max() - rows.min() > cols.max() - cols.min(), name  # the tall stroke stays tall


def test_huge_images_are_refused(tmp_path, monkeypatch):
    path = write(tmp_path / "big.png", "L", (300, 300), 255)
    monkeypatch.setattr(predict, "MAX_PIXELS", 200 * 200)
    with pytest.raises(predict.ImageError, match="over the"):
        predict.load_gray(path)
    monkeypatch.setattr(predict, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # Pillow's own decompression-bomb guard
    with pytest.raises(predict.ImageError, match="not an image Pillow can read"):
        predict.load_gray(path)
