"""Fuzzing the image boundary with hypothesis: real PNG, JPEG, TIFF, WebP, GIF, BMP (and AVIF where Pillow
encodes it) bytes of a digit, mutated — bytes flipped, ranges overwritten, cut short, sizes in headers set to
extremes — through `mnistcnn predict` (exit 0, or exit 2 with one `error:` line naming the file; never a
traceback) and POST /api/predict (200 or a 4xx JSON; never a 500). Deterministic (derandomize=True)."""

from __future__ import annotations

import io
import warnings

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, features
from typer.testing import CliRunner

from mnistcnn.cli import app

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FORMATS = {"png": "PNG", "jpg": "JPEG", "tiff": "TIFF", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}
if features.check("avif"):
    FORMATS["avif"] = "AVIF"


def real_images() -> dict[str, bytes]:
    img = Image.new("L", (72, 72), 250)
    ImageDraw.Draw(img).line([(20, 14), (52, 14), (30, 60)], fill=10, width=6)  # a 7
    out = {}
    for suffix, fmt in FORMATS.items():
        buf = io.BytesIO()
        (img.convert("RGB") if fmt in ("JPEG", "WEBP", "AVIF") else img).save(buf, fmt)
        out[suffix] = buf.getvalue()
    return out


REAL = real_images()


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(REAL)))
    data = bytearray(REAL[suffix])
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        n = len(data)
        if n < 2:
            break
        at = draw(st.integers(0, n - 1))
        how = draw(st.sampled_from(["flip", "flip", "flip", "overwrite", "cut", "repeat", "extreme", "zero"]))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "overwrite":
            data[at : at + 8] = draw(st.binary(min_size=1, max_size=8))
        elif how == "cut":
            del data[max(1, at) :]
        elif how == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
        elif how == "extreme":  # a width, height, length or offset in a header
            data[at : at + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\0\0\0\0", b"\0\0\x80\0"])
            )
        else:
            data[at : at + draw(st.integers(1, 32))] = b"\0" * 8
        event(f"{suffix} {how}")
    return suffix, bytes(data)


@pytest.fixture(scope="module")
def ckpt(train_run, tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("fuzz-images") / "run", epochs=1) / "last.pt"


@pytest.fixture(scope="module")
def client(ckpt):
    from mnistcnn.serve.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app(ckpt, "cpu"), base_url="http://localhost", raise_server_exceptions=False)


def test_the_real_images_are_read(ckpt, tmp_path):
    for suffix, data in REAL.items():
        (tmp_path / f"seven.{suffix}").write_bytes(data)
    result = CliRunner().invoke(app, ["predict", str(ckpt), str(tmp_path)])
    assert result.exit_code == 0 and result.output.count("seven.") == len(REAL), result.output


@FUZZ
@given(mutated(), st.booleans())
def test_predict_reads_a_mutated_image_or_says_one_line(ckpt, tmp_path, case, multi):
    suffix, data = case
    path = tmp_path / f"fuzzed.{suffix}"
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, ["predict", str(ckpt), str(path), *(["--multi"] if multi else [])])
    assert not [w for w in warned if "PIL" in w.filename], [
        str(w.message) for w in warned
    ]  # stderr lines too
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    event(f"exit {result.exit_code}")
    if result.exit_code != 0:
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert str(path) in lines[0]


@FUZZ
@given(mutated(), st.booleans(), st.booleans())
def test_post_predict_answers_a_mutated_image_with_200_or_a_4xx_json(client, case, multi, multipart):
    suffix, data = case
    query = "?multi=1" if multi else ""
    if multipart:
        r = client.post(f"/api/predict{query}", files={"image": (f"fuzzed.{suffix}", data, "image/png")})
    else:
        r = client.post(f"/api/predict{query}", content=data, headers={"content-type": f"image/{suffix}"})
    event(f"status {r.status_code}")
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    body = r.json()
    assert (
        ("prediction" in body)
        if r.status_code == 200
        else (list(body) == ["error"] and "\n" not in body["error"])
    )
