"""Odd images behind one boundary: whatever Pillow, OpenCV or the ink finder does with a user's picture, `predict`
says one line naming the file (exit 2) and POST /api/predict answers a 4xx JSON; only the promised formats are
decoded; a large picture is decoded at reduced size; `predict` holds one picture at a time."""

import io
import struct
import weakref
import zlib

import numpy as np
import pytest
from PIL import Image, features
from typer.testing import CliRunner

from mnistcnn import images, segment
from mnistcnn.cli import app
from mnistcnn.images import DECODE_SIDE, ImageError, extract, load_picture

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(train_run, tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("odd") / "run", epochs=1) / "last.pt"


@pytest.fixture(scope="module")
def client(ckpt):
    import warnings

    from mnistcnn.serve.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(ckpt, "cpu"), base_url="http://localhost", raise_server_exceptions=False)


def encoded(img: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def digit(mode: str = "L", size=(120, 120)) -> Image.Image:
    canvas = Image.new("L", size, 255)
    canvas.paste(0, (size[0] // 2 - 6, size[1] // 5, size[0] // 2 + 6, 4 * size[1] // 5))
    return canvas.convert(mode)


rng = np.random.default_rng(0)
ODD = {  # name: file bytes
    "strip-10x3000.png": encoded(
        Image.fromarray((rng.random((10, 3000)) > 0.5).astype(np.uint8) * 255), "PNG"
    ),
    "strip-3000x10.png": encoded(
        Image.fromarray((rng.random((3000, 10)) > 0.5).astype(np.uint8) * 255), "PNG"
    ),
    "dashes-20x20000.png": encoded(
        Image.fromarray(np.where(np.arange(20000) % 40 < 4, 0, 255).astype(np.uint8)[None].repeat(20, 0)),
        "PNG",
    ),
    "checker-1bit.png": encoded(Image.fromarray((np.indices((64, 64)).sum(0) % 2).astype(bool)), "PNG"),
    "black-1bit.bmp": encoded(Image.new("1", (50, 50), 0), "BMP"),
    "nearly-white.jpg": encoded(Image.fromarray(np.full((600, 800), 252, np.uint8)), "JPEG"),
    "palette-256.png": encoded(
        Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8)).convert("P"), "PNG"
    ),
    "sixteen-bit-black.png": encoded(Image.new("I;16", (90, 90), 0), "PNG"),
    "float-nan.tiff": encoded(Image.fromarray(np.full((60, 60), np.nan, np.float32)), "TIFF"),
    "float-inf.tiff": encoded(
        Image.fromarray(np.where(np.eye(60) > 0, np.inf, 0).astype(np.float32)), "TIFF"
    ),
    "cmyk.tiff": encoded(digit("CMYK"), "TIFF"),
    "la.png": encoded(digit("LA"), "PNG"),
    "animated.gif": encoded(digit("P"), "GIF", save_all=True, append_images=[Image.new("P", (120, 120), 0)]),
    "webp-lossless.webp": encoded(digit("RGB"), "WEBP", lossless=True),
    "truncated.jpg": encoded(digit("RGB", (800, 600)), "JPEG")[:700],
    "truncated.png": encoded(digit(), "PNG")[:90],
    "truncated.tiff": encoded(digit(), "TIFF")[:300],
    "dds.dds": encoded(digit("RGB"), "DDS"),
    "spider.spi": encoded(digit("F"), "SPIDER"),
    "tga.tga": encoded(digit("RGB"), "TGA"),
    "pcx.pcx": encoded(digit("RGB"), "PCX"),
    "ico.ico": encoded(digit("RGB", (64, 64)), "ICO"),
}
if features.check("avif"):
    ODD["truncated.avif"] = encoded(digit("RGB"), "AVIF")[:200]


def one_error_line(result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_images_are_read_or_one_line_naming_the_file(ckpt, tmp_path, client, name):
    path = tmp_path / name
    path.write_bytes(ODD[name])
    result = runner.invoke(app, ["predict", str(ckpt), str(path), "--multi"])
    if result.exit_code != 0:
        assert str(path) in one_error_line(result)
    r = client.post("/api/predict?multi=1", content=ODD[name], headers={"content-type": "image/png"})
    assert r.status_code in (200, 400, 413, 415, 422) and list(r.json()) != [], r.text
    assert (r.status_code == 200) == (result.exit_code == 0), (r.text, result.output)


@pytest.mark.parametrize("name", ["dds.dds", "spider.spi", "tga.tga", "pcx.pcx", "ico.ico"])
def test_only_the_promised_formats_are_decoded(tmp_path, name):
    (tmp_path / name).write_bytes(ODD[name])
    with pytest.raises(ImageError, match="not an image Pillow can read.*PNG/JPEG"):
        load_picture(tmp_path / name)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow reads no AVIF")
def test_avif_is_read_where_pillow_reads_it(tmp_path):
    (tmp_path / "one.avif").write_bytes(encoded(digit("RGB"), "AVIF"))
    assert extract(load_picture(tmp_path / "one.avif")).digits.shape == (1, 28, 28)


def test_a_failure_inside_the_ink_finder_is_one_line_and_a_422(ckpt, tmp_path, client, monkeypatch):
    """The boundary, not the cases: any exception from our own segmentation (or OpenCV under it)."""
    path = tmp_path / "seven.png"
    path.write_bytes(encoded(digit(), "PNG"))

    def broken(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(segment, "find_groups", broken)
    line = one_error_line(runner.invoke(app, ["predict", str(ckpt), str(path)]))
    assert str(path) in line and "ZeroDivisionError" in line
    r = client.post("/api/predict", content=path.read_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 422 and "ZeroDivisionError" in r.json()["error"]


def test_a_failure_inside_a_decoder_is_one_line_and_a_4xx(ckpt, tmp_path, client, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "seven.png"
    path.write_bytes(encoded(digit(), "PNG"))

    def broken(self):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    line = one_error_line(runner.invoke(app, ["predict", str(ckpt), str(path)]))
    assert str(path) in line and "struct.error" in line or "error:" in line
    r = client.post("/api/predict", content=path.read_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 422 and "unpack requires" in r.json()["error"]


@pytest.mark.parametrize("shape", [(2, 3000), (3000, 2), (5, 800), (800, 5), (3, 40000), (13, 9000), (2, 2)])
@pytest.mark.parametrize("kind", ["noise", "checker", "dark", "one-dot"])
def test_extreme_shapes_find_a_digit_or_say_why(shape, kind):
    """Found: cv2.resize to 0 px tall (a 3000×10 strip), OverflowError from a mask with no background."""
    h, w = shape
    gray = {
        "noise": lambda: np.random.default_rng(1).random(shape),
        "checker": lambda: (np.indices(shape).sum(0) % 2).astype(float),
        "dark": lambda: np.zeros(shape),
        "one-dot": lambda: np.where(np.arange(h * w).reshape(shape) == h * w // 2, 0.0, 1.0),
    }[kind]()
    for multi in (False, True):
        try:
            out = extract(gray, multi).digits
        except ImageError as e:
            assert "\n" not in str(e) and not isinstance(e, images.UnreadableImage), e
        else:
            assert out.shape[1:] == (28, 28) and np.isfinite(out).all()


def test_stroke_width_counts_the_border_as_background():
    band = np.zeros((40, 40), np.uint8)
    band[10:30, :] = 1  # a band 20 px wide: mean distance 5 → width 20
    assert abs(segment.stroke_width(band) - 20) < 3
    full = np.ones((30, 30), np.uint8)  # no background pixel at all: was inf (OverflowError in int())
    assert 10 < segment.stroke_width(full) < 30


def test_a_large_jpeg_is_decoded_at_reduced_size_and_boxes_stay_in_its_pixels(tmp_path):
    big = Image.new("L", (6000, 4000), 235)
    big.paste(20, (2900, 1200, 3100, 2800))  # a 1, 200 × 1600 px
    big.save(tmp_path / "big.jpg", quality=90)
    picture = load_picture(tmp_path / "big.jpg")
    assert picture.size == (6000, 4000)
    assert DECODE_SIDE <= max(picture.gray.shape) < 2 * DECODE_SIDE  # DCT-scaled: 1/2 (3000 × 2000)
    (box,) = extract(picture).boxes
    assert (
        abs(box[0] - 2900) < 40
        and abs(box[1] - 1200) < 40
        and abs(box[2] - 3100) < 40
        and abs(box[3] - 2800) < 40
    )
    big.save(tmp_path / "big.png")
    assert max(load_picture(tmp_path / "big.png").gray.shape) < 2 * DECODE_SIDE  # Pillow's reduce


def test_predict_holds_one_picture_at_a_time(ckpt, tmp_path, monkeypatch):
    """Found: every image was decoded before any was read (20 × 40 MP under a 3 GB limit: MemoryError)."""
    import mnistcnn.cli.explain as explain

    for k in range(4):
        digit(size=(100 + k, 100)).save(tmp_path / f"d{k}.png")
    real_load, real_said = images.load_picture, explain._said
    alive, events = [], []

    def load(path):
        events.append(("decode", sum(r() is not None for r in alive)))
        picture = real_load(path)
        alive.append(weakref.ref(picture))
        return picture

    monkeypatch.setattr(images, "load_picture", load)
    monkeypatch.setattr(explain, "_said", lambda *a: events.append(("print", 0)) or real_said(*a))
    result = runner.invoke(app, ["predict", str(ckpt), str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [e for e, _ in events] == ["decode", "print"] * 4  # decode → read → print, one at a time
    assert all(n == 0 for e, n in events if e == "decode")  # the previous picture was freed before the next


def zlib_png(w: int, h: int) -> bytes:
    raw = b"".join(b"\0" + b"\xff" * w for _ in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def test_a_small_file_of_many_pixels_is_decoded_at_reduced_size(tmp_path):
    """A 30 MP white PNG is ~30 KB: its float copy would be 120 MB; decoded and reduced it is ~5 MB."""
    (tmp_path / "wide.png").write_bytes(zlib_png(7500, 4000))
    picture = load_picture(tmp_path / "wide.png")
    assert picture.size == (7500, 4000) and picture.gray.nbytes < 12_000_000


@pytest.mark.parametrize("err", [5, 13], ids=["EIO", "EACCES"])
def test_a_read_fault_at_any_read_of_a_folder_of_images_is_one_line(ckpt, tmp_path, monkeypatch, err):
    """The fault-injection harness (tests/faults.py) with reads: the Nth read of the images fails, for every N."""
    from faults import CAUSES, Faults

    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(3):
        digit(size=(100 + 10 * k, 120)).save(folder / f"d{k}.png")
    faults = Faults(folder, reads=True)
    faults.install(monkeypatch)
    for n in range(1, 50):
        faults.arm(n, err)
        result = runner.invoke(app, ["predict", str(ckpt), str(folder)])
        if faults.failed is None:
            assert result.exit_code == 0 and result.output.count("d") >= 3, result.output
            break
        line = one_error_line(result)
        assert faults.failed[1].split("/")[-1] in line and CAUSES[err] in line.lower(), (
            n,
            faults.failed,
            line,
        )
    assert n > 3  # each image was opened and read


def test_show_input_refuses_more_images_than_it_can_draw_before_reading_any(ckpt, tmp_path, monkeypatch):
    import mnistcnn.cli.explain as explain

    for k in range(3):
        digit().save(tmp_path / f"d{k}.png")
    monkeypatch.setattr(explain, "SHOW_MOST", 2)
    monkeypatch.setattr(images, "load_picture", lambda path: pytest.fail("read before refusing"))
    line = one_error_line(
        runner.invoke(app, ["predict", str(ckpt), str(tmp_path), "--show-input", str(tmp_path / "s.png")])
    )
    assert "at most 2 images; got 3" in line and not (tmp_path / "s.png").exists()
