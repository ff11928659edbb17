"""serve: the web API (through FastAPI's TestClient) and the `mnistcnn serve` command (a real process)."""

import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistcnn.errors import MnistcnnError
from mnistcnn.serve.app import MAX_BODY, create_app

with warnings.catch_warnings():  # starlette suggests httpx2; httpx is what fastapi's TestClient documents
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient as _TestClient


def TestClient(app, **kwargs):  # noqa: N802 - the server answers its own host names only (DNS rebinding)
    return _TestClient(app, base_url="http://localhost", **kwargs)


STATIC = Path(__file__).parents[1] / "src" / "mnistcnn" / "serve" / "static"


@pytest.fixture(scope="module")
def runs(train_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "runs"
    train_run(root / "first", epochs=1)
    (root / "secret.txt").write_text("not for the web")
    return root


@pytest.fixture(scope="module")
def client(runs, mnist_root):
    return TestClient(create_app(runs, "cpu", mnist_root), raise_server_exceptions=False)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def seven(size: int = 300) -> bytes:
    """A clear 7 in dark ink on white, as a person draws it."""
    img = Image.new("L", (size, size), 255)
    s = size / 300
    ImageDraw.Draw(img).line(
        [(80 * s, 60 * s), (220 * s, 60 * s), (130 * s, 250 * s)], fill=0, width=int(24 * s)
    )
    return png(img)


def post(client, body: bytes, query: str = "", ctype: str = "image/png"):
    return client.post(f"/api/predict{query}", content=body, headers={"content-type": ctype})


def library_answer(runs, body: bytes, multi: bool = False) -> dict:
    """What `mnistcnn predict` computes for the same picture."""
    from mnistcnn.checkpoint import load_model
    from mnistcnn.images import decode_gray
    from mnistcnn.predict import read_digits

    ckpt, model = load_model(runs / "first", "cpu")
    return read_digits(ckpt, model, decode_gray(body, "x"), multi)


def decode(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    import base64

    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_predict_raw_body_matches_the_library(client, runs):
    body = seven()
    r = post(client, body)
    assert r.status_code == 200, r.text
    a = r.json()
    expected = library_answer(runs, body)
    expected.pop("inputs")
    assert a["text"] == str(a["prediction"]) and {k: a[k] for k in expected} == expected
    assert abs(sum(a["probabilities"]) - 1) < 1e-4
    assert a["digits"][0]["prediction"] == a["prediction"] and len(a["digits"][0]["box"]) == 4
    seen = decode(a["input_png"])
    assert seen.size == (28, 28) and seen.mode == "L"
    assert "features" not in a


def test_predict_a_number_with_multi(client, runs):
    img = Image.new("L", (560, 300), 255)
    draw = ImageDraw.Draw(img)
    draw.line([(120, 50), (120, 250)], fill=0, width=24)  # 1
    draw.line([(300, 60), (460, 60), (360, 250)], fill=0, width=24)  # 7
    body = png(img)
    r = post(client, body, "?multi=1")
    assert r.status_code == 200, r.text
    a = r.json()
    expected = library_answer(runs, body, multi=True)
    assert len(a["digits"]) == 2 and a["probabilities"] is None and a["text"] == expected["text"]
    assert [d["box"] for d in a["digits"]] == [d["box"] for d in expected["digits"]]
    assert a["digits"][0]["box"][2] <= a["digits"][1]["box"][0]  # left to right
    assert decode(a["input_png"]).size == (2 * 28 + 2, 28)  # the two inputs side by side


def test_predict_multipart_equals_raw_and_features_are_mosaics(client):
    body = seven()
    raw = post(client, body, "?features=1").json()
    form = client.post("/api/predict?features=1", files={"image": ("seven.png", body, "image/png")})
    assert form.status_code == 200, form.text
    assert form.json()["probabilities"] == raw["probabilities"]
    f = raw["features"]
    assert (f["conv1"]["maps"], f["conv1"]["size"], f["conv2"]["maps"], f["conv2"]["size"]) == (
        32,
        [14, 14],
        64,
        [6, 6],
    )
    assert decode(f["conv1"]["png"]).size == (8 * 15 - 1, 4 * 15 - 1)  # 8 × 4 maps of 14 px, 1 px apart
    assert decode(f["conv2"]["png"]).size == (8 * 7 - 1, 8 * 7 - 1)


def test_feature_mosaics_are_in_viridis():
    """The mosaics' colours are matplotlib's viridis (the table comes from OpenCV: no matplotlib import)."""
    import matplotlib

    from mnistcnn.serve import pictures

    want = matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255
    assert np.abs(pictures._viridis().astype(float) - want).max() <= 1.0
    ramp = pictures.mosaic(np.linspace(0, 1, 2 * 3 * 3).reshape(2, 3, 3), cols=2)
    assert tuple(ramp[0, 0]) == tuple(pictures._viridis()[0])  # each map's low end: viridis' dark purple
    assert tuple(ramp[2, 2]) == tuple(pictures._viridis()[255])  # and its high end: yellow


def test_images_are_read_by_one_thread_per_core(runs, monkeypatch):
    """8 requests at once: at most `cores()` of them read images at the same time (more only take turns)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import anyio
    import httpx

    import mnistcnn.serve.app as app_module

    real, lock, busy = app_module.read_upload, threading.Lock(), {"now": 0, "most": 0}

    def counted(*args, **kwargs):
        with lock:
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
        time.sleep(0.05)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                busy["now"] -= 1

    monkeypatch.setattr(app_module, "read_upload", counted)
    monkeypatch.setattr(app_module, "cores", lambda: 2)
    app = create_app(runs, "cpu")
    body = seven()

    async def eight() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            codes = []

            async def one() -> None:
                r = await c.post("/api/predict", content=body, headers={"content-type": "image/png"})
                codes.append(r.status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(one)
            return codes

    with ThreadPoolExecutor(1) as pool:  # its own thread: a browser test may hold this one's event loop
        assert pool.submit(anyio.run, eight).result() == [200] * 8
    assert busy["most"] == 2


def test_warm_up_reads_a_digit_with_the_default_checkpoint_and_is_quiet_without_one(
    runs, tmp_path, monkeypatch
):
    import mnistcnn.serve.app as app_module

    answers = []
    real = app_module.read_upload
    monkeypatch.setattr(app_module, "read_upload", lambda *a, **k: answers.append(real(*a, **k)))
    create_app(runs, "cpu").state.warm_up()
    assert len(answers) == 1 and answers[0]["text"].isdigit() and "features" in answers[0]
    (tmp_path / "empty").mkdir()
    create_app(tmp_path / "empty", "cpu").state.warm_up()  # no checkpoint yet: the page will say so
    import shutil

    broken = shutil.copytree(runs / "first", tmp_path / "broken")
    for name in ("last.pt", "best.pt"):
        (broken / name).write_bytes(b"not a checkpoint")
    create_app(broken, "cpu").state.warm_up()  # the page will say what is wrong with it
    assert len(answers) == 1


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png_header(w: int, h: int) -> bytes:
    """A valid PNG header claiming w × h pixels, with almost no pixel data (a decompression bomb's start)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


BLANK = png(Image.new("L", (64, 64), 255))
ERRORS = {
    "text-body": (b"hello", "", "text/plain", 415, "not an image"),
    "no-content-type": (b"hello", "", "", 415, "not an image"),
    "garbage-image": (b"\x00garbage" * 10, "", "image/png", 415, "not an image"),
    "truncated-png": (seven()[:200], "", "image/png", 415, "upload"),
    "empty-body": (b"", "", "image/png", 400, "no image"),
    "blank-page": (BLANK, "", "image/png", 400, "no digit"),
    "over-pixel-limit": (huge_png_header(7_000, 7_000), "", "image/png", 413, "MP limit"),
    "decompression-bomb": (huge_png_header(20_000, 20_000), "", "image/png", 413, "MP limit"),
    "bad-flag": (seven(), "?multi=maybe", "image/png", 400, "multi"),
    "unknown-run": (seven(), "?run=nope", "image/png", 404, "no run named 'nope'"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_predict_errors_are_one_json_line_and_the_server_keeps_serving(client, case):
    body, query, ctype, status, words = ERRORS[case]
    r = post(client, body, query, ctype)
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and words in r.json()["error"]
    assert "Traceback" not in r.text
    assert post(client, seven()).status_code == 200


def test_multipart_without_an_image_field(client):
    r = client.post("/api/predict", files={"photo": ("seven.png", seven(), "image/png")})
    assert r.status_code == 400 and "field named 'image'" in r.json()["error"]


def test_body_over_10_mib_is_413_by_length_and_by_streamed_size(client):
    big = b"\x00" * (11 * 1024 * 1024)
    r = post(client, big)
    assert r.status_code == 413 and "10 MiB" in r.json()["error"]

    def chunks():  # no Content-Length: the server counts what arrives
        for _ in range(11):
            yield b"\x00" * (1024 * 1024)

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "10 MiB" in r.json()["error"]
    assert post(client, seven()).status_code == 200
    assert post(client, seven(1000)).status_code == 200 and len(seven(1000)) < MAX_BODY


TRAVERSALS = [
    "..",
    "%2E%2E",
    "..%2F..%2Fetc",
    "%2Fetc%2Fpasswd",
    "first%2F..%2Ffirst",
    "secret.txt",
    "%00",
    "~",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_run_names_are_looked_up_never_joined_into_paths(client, name):
    r = client.get(f"/api/runs/{name}/metrics")
    assert r.status_code == 404 and "error" in r.json(), r.text
    for url in (f"/api/model?run={name}", f"/api/predict?run={name}"):
        r = client.get(url) if "model" in url else post(client, seven(), f"?run={name}")
        assert r.status_code == 404 and "error" in r.json(), (url, r.text)


@pytest.mark.parametrize(
    "path", ["/api/runs//etc/passwd/metrics", "/static/../../tests/conftest.py", "/static/%2E%2E/app.py"]
)
def test_paths_outside_the_package_and_runs_are_404(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "error" in r.json(), r.text


def test_runs_listing_and_metrics_with_offsets(client, runs):
    listing = client.get("/api/runs").json()
    assert listing["default"] == "first" and listing["hint"] is None
    (row,) = listing["runs"]
    test = [json.loads(x) for x in (runs / "first" / "metrics.jsonl").read_text().splitlines()][-1]
    assert row["name"] == "first" and row["test_acc"] == test["test_acc"] and row["checkpoint"]
    assert row["config"]["batch_size"] == 32 and row["epochs_done"] == 1 and not row["training"]

    from mnistcnn.rundir import read_metrics

    m = client.get("/api/runs/first/metrics").json()
    assert m["records"] == read_metrics(runs / "first" / "metrics.jsonl")[0] and not m["reset"]
    assert client.get(f"/api/runs/first/metrics?after={m['offset']}").json()["records"] == []


def test_metrics_polling_sees_appended_lines_whole_and_a_rewrite(client, tmp_path, mnist_root, monkeypatch):
    run = tmp_path / "live"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"type":"batch","epoch":1,"step":1,"loss":2.3}\n')
    c = TestClient(create_app(run, "cpu", mnist_root))
    first = c.get("/api/runs/live/metrics").json()
    assert [r["step"] for r in first["records"]] == [1]
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"type":"batch","epoch":1,"step":2,"loss":2.1}\n{"type":"batch","ep')  # a line being written
    second = c.get(f"/api/runs/live/metrics?after={first['offset']}").json()
    assert [r["step"] for r in second["records"]] == [2]
    with (run / "metrics.jsonl").open("a") as f:
        f.write('och":1,"step":3,"loss":2.0}\n')
    third = c.get(f"/api/runs/live/metrics?after={second['offset']}").json()
    assert [r["step"] for r in third["records"]] == [3]
    (run / "metrics.jsonl").write_text(
        '{"type":"batch","epoch":1,"step":1,"loss":2.3}\n'
    )  # resumed: cut back
    again = c.get(f"/api/runs/live/metrics?after={third['offset']}").json()
    assert again["reset"] and [r["step"] for r in again["records"]] == [1]
    assert c.get("/api/runs/live/metrics?after=-1").status_code == 400
    listing = c.get("/api/runs").json()
    assert (
        listing["default"] is None and listing["runs"][0]["training"] and not listing["runs"][0]["checkpoint"]
    )


def test_model_summary_and_evaluation_reuse_the_library(client, runs, mnist_root):
    import torch

    from mnistcnn.evaluate import evaluate_checkpoint

    m = client.get("/api/model").json()
    assert m["parameters"] == 41_866 and m["name"] == "first" and m["activation"] == "relu"
    assert [layer["shape"] for layer in m["layers"]][-1] == [10]
    weights = torch.load(runs / "first" / "last.pt", weights_only=True)["model"]["conv1.weight"][:, 0]
    np.testing.assert_allclose(m["filters"], weights.numpy(), atol=1e-5)
    e = client.get("/api/model/evaluation").json()
    expected = evaluate_checkpoint(runs / "first", mnist_root, "cpu")
    assert e["accuracy"] == expected["accuracy"] and e["confusion"] == expected["confusion"]
    wrong = e["n"] - sum(e["confusion"][d][d] for d in range(10))
    assert e["misclassified"] == wrong and len(e["failures"]) == min(36, wrong)
    conf = [f["confidence"] for f in e["failures"]]
    assert conf == sorted(conf, reverse=True) and all(f["label"] != f["prediction"] for f in e["failures"])
    assert decode(e["failures"][0]["png"]).size == (28, 28)


@pytest.mark.parametrize("target", ["default", "empty-folder"])
def test_no_checkpoint_yet_says_how_to_train(tmp_path, mnist_root, monkeypatch, target):
    monkeypatch.chdir(tmp_path)  # the default is ./runs, absent here
    if target == "empty-folder":
        (tmp_path / "empty").mkdir()
    c = TestClient(create_app(None if target == "default" else tmp_path / "empty", "cpu", mnist_root))
    listing = c.get("/api/runs").json()
    assert (
        listing == {"default": None, "hint": listing["hint"], "runs": []}
        and "mnistcnn train" in listing["hint"]
    )
    for r in (post(c, seven()), c.get("/api/model")):
        assert r.status_code == 404 and "mnistcnn train" in r.json()["error"]
    assert c.get("/").status_code == 200


def test_a_checkpoint_file_target_and_the_run_switch(runs, mnist_root, tmp_path):
    c = TestClient(create_app(runs / "first" / "best.pt", "cpu", mnist_root))
    assert c.get("/api/model").json()["name"] == "best.pt"
    assert [r["name"] for r in c.get("/api/runs").json()["runs"]] == ["first"]
    assert c.get("/api/model?run=first").json()["name"] == "first"
    with pytest.raises(MnistcnnError, match="does not exist"):
        create_app(tmp_path / "nowhere", "cpu")
    with pytest.raises(MnistcnnError, match="device"):
        create_app(runs, "tpu")


def test_a_run_deleted_while_serving_is_404_not_500(tmp_path, monkeypatch):
    """Found a 500 (FileNotFoundError) by deleting a run folder while polling its metrics: the folder was
    listed, then gone before the open. Both the metrics file and the checkpoint may vanish that way."""
    from pathlib import Path as P

    from mnistcnn.serve.models import Models
    from mnistcnn.serve.runs import read_after

    gone = tmp_path / "run" / "metrics.jsonl"
    monkeypatch.setattr(P, "is_file", lambda self: True)  # it was there when looked at
    assert read_after(gone, 0) == {"records": [], "offset": 0, "reset": False}
    assert read_after(gone, 10)["reset"] is True
    monkeypatch.undo()
    with pytest.raises(MnistcnnError, match="gone") as e:
        Models("cpu").get("run", tmp_path / "run" / "last.pt")
    assert e.value.status == 404


def test_a_file_that_is_not_a_checkpoint_is_refused_at_start(tmp_path, mnist_root):
    photo = tmp_path / "seven.png"
    photo.write_bytes(seven())
    with pytest.raises(MnistcnnError, match="not a readable checkpoint"):
        create_app(photo, "cpu", mnist_root)


def test_a_wrong_method_says_which_to_use(client):
    r = client.get("/api/predict")
    assert r.status_code == 405 and r.json() == {"error": "GET is not allowed on /api/predict; use POST"}
    r = client.delete("/api/runs")
    assert r.status_code == 405 and r.json()["error"].endswith("use GET")
    r = client.head("/api/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.content == b""


@pytest.mark.parametrize(
    "path", ["/", "/api/runs", "/api/model", "/static/app.js", "/api/runs/first/metrics"]
)
def test_head_is_answered_wherever_get_is(client, path):
    got, head = client.get(path), client.head(path)
    assert got.status_code == head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "content-security-policy"):
        assert head.headers.get(name) == got.headers.get(name), name


def test_a_model_whose_weights_overflow_answers_null_not_a_500(runs, tmp_path):
    """Huge finite weights pass the checkpoint schema but make NaN probabilities and loss: the answers are JSON
    with nulls, as `predict --json` / `eval --json` print them."""
    import torch

    from mnistcnn import checkpoint

    ckpt = torch.load(runs / "first" / "last.pt", weights_only=False)
    ckpt["model"]["fc1.weight"] = torch.full_like(ckpt["model"]["fc1.weight"], 1e38)
    checkpoint.save(tmp_path / "huge.pt", ckpt)
    c = TestClient(create_app(tmp_path / "huge.pt", "cpu"), raise_server_exceptions=False)
    r = post(c, seven())
    assert r.status_code == 200, r.text
    assert None in r.json()["probabilities"] and "NaN" not in r.text


def test_a_bug_is_a_json_500_and_the_server_keeps_serving(client, monkeypatch):
    import mnistcnn.serve.reading as reading

    monkeypatch.setattr(reading.pictures, "png_data_url", lambda *_: 1 / 0)
    r = post(client, seven())
    assert r.status_code == 500 and r.json() == {
        "error": "internal error (ZeroDivisionError); see the server's log"
    }
    monkeypatch.undo()
    assert post(client, seven()).status_code == 200


def test_page_is_whole_small_local_and_has_no_cors(client):
    r = client.get("/", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    for testid in (
        "pad",
        "clear",
        "upload",
        "prediction",
        "probabilities",
        "model-input",
        "features",
        "chart",
    ):
        assert f'data-testid="{testid}"' in html
    assert 'accept="image/*"' in html and 'capture="environment"' in html
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert sorted(assets) == ["/static/app.js", "/static/style.css"]
    first_load = len(r.content) + sum(len(client.get(a).content) for a in assets)
    assert first_load <= 300 * 1024
    every = " ".join(p.read_text() for p in STATIC.iterdir())
    assert not re.search(r"https?://", every.replace("http://www.w3.org", "")), (
        "the page must not fetch from elsewhere"
    )
    preflight = client.options(
        "/api/predict", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
    assert client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["requestBody"]["content"]


# ---- the command: a real process, its URL, its signals ----


def start(args: list[str], cwd: Path) -> tuple[subprocess.Popen, str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistcnn", "serve", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if found := re.search(r"http://\S+", line):
            return proc, found.group(0), "".join(lines)
    proc.wait(10)
    pytest.fail(f"no URL printed; exit {proc.returncode}: {proc.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_prints_its_url_serves_and_exits_0_on_a_signal(runs, sig):
    import httpx

    proc, url, printed = start(["first", "--port", "0", "--device", "cpu"], cwd=runs)
    try:
        assert url.startswith("http://127.0.0.1:") and "warning" not in printed
        assert httpx.get(url + "api/runs", timeout=20).json()["default"] == "first"
        head = httpx.head(url, timeout=20)  # uvicorn sends the headers of GET, no body
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 1000
        r = httpx.post(
            url + "api/predict", content=seven(), headers={"content-type": "image/png"}, timeout=20
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(sig)
        assert proc.wait(20) == 0, proc.stderr.read()


def test_serve_warns_off_loopback_and_refuses_a_taken_port(runs):
    proc, url, printed = start([str(runs), "--host", "0.0.0.0", "--port", "0"], cwd=runs)
    try:
        assert "warning" not in printed  # a warning goes to stderr, read below
        port = url.rsplit(":", 1)[1].strip("/")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        taken = subprocess.run(
            [sys.executable, "-m", "mnistcnn", "serve", str(runs), "--host", "0.0.0.0", "--port", port],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            taken.returncode == 2
            and taken.stderr.startswith("error: cannot listen")
            and "--port" in taken.stderr
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert proc.stderr.read().startswith("warning: --host 0.0.0.0 makes the page reachable")


def test_serve_missing_target_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    r = subprocess.run(
        [sys.executable, "-m", "mnistcnn", "serve", str(tmp_path / "nope")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("10.1.2.3", False)],
)
def test_only_loopback_hosts_go_without_a_warning(host, loopback):
    from mnistcnn.serve.server import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "host, port, words",
    [("127.0.0.1", 70000, "--port must be between"), ("no-such-host.invalid", 0, "--host")],
)
def test_bad_host_or_port_is_one_line(host, port, words):
    from mnistcnn.serve.server import bind

    with pytest.raises(MnistcnnError, match=words):
        bind(host, port)


def test_generative_runs_are_listed_but_the_page_reads_digits_with_mynet(train_run, tmp_path, mnist_root):
    """A newer vae run beside a MyNet run: both listed (with their kind), the default checkpoint is MyNet's, and
    asking to read a digit with the vae is a JSON 4xx naming what it holds."""
    import time

    folder = tmp_path / "runs"
    train_run(folder / "mynet", epochs=1, train_limit=64, batch_size=64)
    time.sleep(0.05)
    train_run(folder / "vae", model="vae", epochs=1, train_limit=64, batch_size=64)
    client = TestClient(create_app(folder, "cpu", mnist_root), raise_server_exceptions=False)
    answer = client.get("/api/runs").json()
    assert {r["name"]: r["model"] for r in answer["runs"]} == {"mynet": "mynet", "vae": "vae"}
    assert answer["default"] == "mynet"  # the newer vae run is not the page's default
    r = post(client, seven())
    assert r.status_code == 200 and r.json()["prediction"] in range(10), r.text
    r = post(client, seven(), "?run=vae")
    assert 400 <= r.status_code < 500 and "holds a convolutional VAE (vae)" in r.json()["error"], r.text
