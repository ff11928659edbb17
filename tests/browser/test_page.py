"""The page in a real browser: Debian's Chromium driven by Playwright against the app under uvicorn on a free
loopback port. Skipped when Chromium or Playwright is missing, unless MNISTCNN_REQUIRE_BROWSER=1 (CI): then they
fail. Each test saves a screenshot in its tmp folder (the README's pictures are copies of these).

Usage: `python -m pytest tests/browser -q -s` (-s prints the screenshots' paths).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def runs(train_run, tmp_path_factory) -> Path:
    """A runs folder with one run trained on the fixture well enough to read a clearly drawn 7."""
    root = tmp_path_factory.mktemp("browser") / "runs"
    train_run(root / "fixture-3ep", epochs=3)
    return root


class Served:
    def __init__(self, app) -> None:
        import uvicorn

        from mnistcnn.serve.server import bind, url_of

        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            threading.Event().wait(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="session")
def server(runs, mnist_root):
    from mnistcnn.serve.app import create_app

    with Served(create_app(runs, "cpu", mnist_root)) as served:
        yield served


def shot(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in the test's folder (copy good ones to docs/img/ for the README)."""
    out = tmp_path / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    print(f"screenshot: {out}")
    return out


def draw_on(page, testid: str, strokes) -> None:
    """Mouse strokes on a canvas (`data-testid`), points as fractions of its size."""
    box = page.get_by_test_id(testid).bounding_box()
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the Read pad."""
    draw_on(page, "pad", strokes)


SEVEN = [[(0.25, 0.22), (0.75, 0.22), (0.45, 0.82)]]


def api_answer(page, server, blob_js: str) -> dict:
    """What POST /api/predict says for the same bytes the page sent."""
    return page.evaluate(
        f"""async () => {{
            const blob = await {blob_js};
            const r = await fetch('/api/predict', {{method: 'POST', headers: {{'Content-Type': blob.type}}, body: blob}});
            return r.json();
        }}"""
    )


def test_drawing_a_seven_reads_7_with_its_input_and_feature_maps(page, server, tmp_path):
    from playwright.sync_api import expect

    draw(page, SEVEN)
    expect(page.get_by_test_id("prediction")).to_have_text("7", timeout=20_000)
    sent = api_answer(
        page, server, "new Promise((ok) => document.getElementById('pad').toBlob(ok, 'image/png'))"
    )
    assert sent["text"] == "7"
    bars = page.get_by_test_id("probabilities").get_by_role("listitem")
    expect(bars).to_have_count(10)
    expect(bars.nth(7)).to_have_class("bar top")
    seen = page.get_by_test_id("model-input")
    expect(seen).to_be_visible()
    assert seen.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [28, 28]
    features = page.get_by_test_id("features").get_by_role("img")
    expect(features).to_have_count(2)
    sizes = features.evaluate_all("imgs => imgs.map((i) => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[119, 59], [55, 55]]  # 32 maps of 14×14 and 64 of 6×6, 8 per row, 1 px apart
    expect(page.locator("#quick")).to_be_hidden()  # a laptop shows the result card beside the pad
    shot(page, tmp_path, "draw")
    page.get_by_test_id("clear").click()
    expect(page.get_by_test_id("prediction")).to_have_text("")
    expect(seen).to_be_hidden()
    box = page.get_by_test_id("pad").bounding_box()  # a right-button drag draws nothing
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down(button="right")
    page.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + 0.7 * box["height"], steps=8)
    page.mouse.up(button="right")
    ink = page.evaluate(
        "() => { const c = document.getElementById('pad');"
        " return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.reduce((s, v) => s + v, 0); }"
    )
    assert ink == 255 * 280 * 280  # alpha only: every pixel still black


def photo_of_a_seven(path: Path) -> Path:
    """A phone-photo-like 7: blue ballpoint on off-white paper under uneven light, slightly blurred, JPEG."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    w, h = 480, 640
    light = np.linspace(250, 215, w)[None, :] - np.linspace(0, 15, h)[:, None]
    paper = Image.fromarray(np.stack([light, light, light - 8], -1).astype(np.uint8))
    ImageDraw.Draw(paper).line(
        [(150, 200), (330, 190), (215, 470)], fill=(40, 50, 120), width=22, joint="curve"
    )
    paper.filter(ImageFilter.GaussianBlur(1.5)).save(path, quality=85)
    return path


@pytest.mark.parametrize("page", [{"width": 390, "height": 844}], indirect=True, ids=["phone"])
def test_uploading_a_photo_reads_its_digit(page, server, tmp_path):
    from playwright.sync_api import expect

    upload = page.get_by_test_id("upload")
    assert upload.get_attribute("accept") == "image/*" and upload.get_attribute("capture") == "environment"
    upload.set_input_files(str(photo_of_a_seven(tmp_path / "seven.jpg")))
    expect(page.get_by_test_id("prediction")).to_have_text("7", timeout=20_000)
    sent = api_answer(page, server, "document.getElementById('upload').files[0]")
    assert sent["text"] == "7"
    expect(page.get_by_test_id("model-input")).to_be_visible()
    shot(page, tmp_path, "photo-phone")


def test_choosing_the_same_photo_again_reads_it_again(page, server, tmp_path):
    from playwright.sync_api import expect

    path = photo_of_a_seven(tmp_path / "seven.jpg")
    posts = []
    page.on("requestfinished", lambda r: posts.append(r.url) if "/api/predict" in r.url else None)
    for k in (1, 2):
        with page.expect_file_chooser() as chooser:
            page.locator("label[for=upload]").click()  # the visible "Photo…" button
        chooser.value.set_files(str(path))
        expect(page.get_by_test_id("prediction")).to_have_text("7", timeout=20_000)
        page.wait_for_timeout(500)  # a second request, if one is coming, has finished by now
        assert len(posts) == k, posts


def test_model_tab_by_keyboard_shows_summary_and_test_set_views(page, server, tmp_path, runs, mnist_root):
    from playwright.sync_api import expect

    from mnistcnn.evaluate import evaluate_checkpoint

    page.get_by_test_id("tab-read").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_test_id("layers")).to_contain_text("41,866")
    expected = evaluate_checkpoint(runs / "fixture-3ep", mnist_root, "cpu")
    expect(page.get_by_test_id("accuracy")).to_contain_text(
        f"Accuracy {100 * expected['accuracy']:.2f} %", timeout=30_000
    )
    expect(page.get_by_test_id("confusion").locator("tr")).to_have_count(11)
    wrong = expected["n"] - sum(expected["confusion"][d][d] for d in range(10))
    expect(page.get_by_test_id("failures").get_by_role("img")).to_have_count(min(36, wrong))
    shot(page, tmp_path, "model")


def test_runs_tab_charts_the_runs_points(page, server, tmp_path, runs):
    from playwright.sync_api import expect

    from mnistcnn.rundir import read_metrics

    records = read_metrics(runs / "fixture-3ep" / "metrics.jsonl")[0]
    batches = sum(r["type"] == "batch" for r in records)
    page.get_by_test_id("tab-runs").click()
    expect(page.get_by_test_id("runs")).to_contain_text("fixture-3ep")
    chart = page.get_by_test_id("chart")
    expect(chart).to_have_attribute("data-points", str(batches))
    expect(chart).to_have_attribute("data-epochs", "3")
    expect(page.get_by_test_id("chart-caption")).to_contain_text("test accuracy")
    shot(page, tmp_path, "runs")


def a_number(path: Path, digits: int = 8) -> Path:
    """A photo of `digits` strokes side by side (what they read as does not matter here: the layout does)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (90 * digits + 60, 200), 245)
    for k in range(digits):
        ImageDraw.Draw(img).line(
            [(60 + 90 * k, 40), (90 + 90 * k, 40), (70 + 90 * k, 160)], fill=20, width=12
        )
    img.save(path)
    return path


FITS = "el => el.scrollWidth <= el.clientWidth + 1"


@pytest.mark.parametrize("page", [{"width": 390, "height": 844}], indirect=True, ids=["phone"])
def test_a_phone_shows_every_view_whole(page, server, tmp_path):
    """Found on a phone: the confusion matrix's last column, the runs table's buttons and an 8-digit number's
    input were cut off, "#1: 2" wrapped onto two lines and the accuracy panel of the chart was 27 px high."""
    from playwright.sync_api import expect

    page.get_by_test_id("multi").check()
    page.get_by_test_id("upload").set_input_files(str(a_number(tmp_path / "number.png")))
    bars = page.get_by_test_id("probabilities").get_by_role("listitem")
    expect(bars).to_have_count(8, timeout=20_000)
    one_line = "b => b.children[0].offsetHeight <= b.children[2].offsetHeight"
    assert all(bars.evaluate_all(f"bs => bs.map({one_line})"))
    assert page.get_by_test_id("prediction").evaluate(FITS)
    seen = page.get_by_test_id("model-input")
    assert seen.evaluate(
        "img => img.getBoundingClientRect().right <= img.closest('.card').getBoundingClientRect().right"
    )
    assert page.locator("#seen-caption").inner_text().startswith("what the model saw: 8 inputs of 28×28")
    quick = page.locator("#quick")  # the reading beside the pad, where a phone's screen still is
    expect(quick).to_be_visible()
    assert quick.inner_text() == page.get_by_test_id("prediction").inner_text()
    shot(page, tmp_path, "number-phone")
    page.get_by_test_id("tab-model").click()
    expect(page.get_by_test_id("confusion").locator("tr")).to_have_count(11, timeout=30_000)
    assert page.locator("#panel-model .card").evaluate_all(f"cards => cards.map({FITS})") == [True] * 3
    shot(page, tmp_path, "model-phone")
    page.get_by_test_id("tab-runs").click()
    expect(page.get_by_test_id("chart-caption")).to_contain_text("batch losses")
    assert page.locator("#panel-runs .card").evaluate_all(f"cards => cards.map({FITS})") == [True] * 2
    assert page.get_by_test_id("chart").evaluate("c => c.clientHeight") >= 280
    shot(page, tmp_path, "runs-phone")


# The served default's first evaluation is held back, then answered with a made-up accuracy of 12.34 %.
SLOW_DEFAULT_EVALUATION = """
const realFetch = window.fetch;
window.fetch = async (url, options) => {
  const answer = await realFetch(url, options);
  if (String(url) !== "/api/model/evaluation") return answer;
  await new Promise((ok) => setTimeout(ok, 1500));
  const zeros = Array.from({length: 10}, () => Array(10).fill(0));
  const fake = {accuracy: 0.1234, loss: 9, n: 10000, misclassified: 8766, confusion: zeros, failures: []};
  return new Response(JSON.stringify(fake), {headers: {"Content-Type": "application/json"}});
};
"""


def test_switching_checkpoint_while_the_model_tab_evaluates_shows_the_new_one(page, server, runs, mnist_root):
    """Found: the default checkpoint's evaluation, slow the first time, arrived after the chosen run's and
    overwrote its accuracy and confusion matrix."""
    from playwright.sync_api import expect

    from mnistcnn.evaluate import evaluate_checkpoint

    page.add_init_script(SLOW_DEFAULT_EVALUATION)
    page.reload()
    page.get_by_test_id("tab-model").click()
    page.get_by_test_id("checkpoint").select_option("fixture-3ep")
    expected = evaluate_checkpoint(runs / "fixture-3ep", mnist_root, "cpu")
    accuracy = page.get_by_test_id("accuracy")
    expect(accuracy).to_contain_text(f"Accuracy {100 * expected['accuracy']:.2f} %", timeout=30_000)
    page.wait_for_timeout(2500)  # the held-back answer for the default has arrived by now
    expect(accuracy).to_contain_text(f"Accuracy {100 * expected['accuracy']:.2f} %")


class Gate:
    """A quiet reporter that holds training at the end of epoch 1 until the test opens the gate."""

    def __init__(self) -> None:
        import io

        from mnistcnn.report import PlainReporter

        self.inner = PlainReporter(stream=io.StringIO())
        self.at_gate, self.open = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def end_epoch(self, record: dict) -> None:
        self.inner.end_epoch(record)
        if record["epoch"] == 1:
            self.at_gate.set()
            self.open.wait(120)


def test_a_run_that_is_training_updates_the_chart(page, server, tmp_path, runs, mnist_root):
    from playwright.sync_api import expect

    from mnistcnn.config import load_config
    from mnistcnn.rundir import read_metrics
    from mnistcnn.train import train

    run, gate = runs / "live", Gate()
    cfg = load_config(None, {"batch_size": 64, "device": "cpu", "epochs": 2, "log_every": 4})
    result = {}
    worker = threading.Thread(target=lambda: result.update(train(cfg, mnist_root, run, gate)), daemon=True)
    worker.start()
    try:
        assert gate.at_gate.wait(120), "training did not reach the end of epoch 1"
        first = sum(r["type"] == "batch" for r in read_metrics(run / "metrics.jsonl")[0])
        page.get_by_test_id("tab-runs").click()
        page.get_by_test_id("runs").get_by_role("row", name="live").get_by_role("button").click()
        chart = page.get_by_test_id("chart")
        expect(chart).to_have_attribute("data-points", str(first))
        shot(page, tmp_path, "live-epoch1")
    finally:
        gate.open.set()
        worker.join(120)
    total = sum(r["type"] == "batch" for r in read_metrics(run / "metrics.jsonl")[0])
    assert result and total > first
    expect(chart).to_have_attribute("data-points", str(total), timeout=15_000)
    expect(chart).to_have_attribute("data-epochs", "2")
    shot(page, tmp_path, "live-done")


SEND_A_DRAWN_SEVEN = """async (how) => {
    const c = new OffscreenCanvas(200, 200), g = c.getContext("2d");
    g.fillStyle = "#fff"; g.fillRect(0, 0, 200, 200);
    g.strokeStyle = "#222"; g.lineWidth = 16; g.lineCap = "round";
    g.beginPath(); g.moveTo(50, 40); g.lineTo(150, 40); g.lineTo(85, 170); g.stroke();
    const file = new File([await c.convertToBlob({type: "image/png"})], "seven.png", {type: "image/png"});
    const dt = new DataTransfer();
    dt.items.add(file);
    if (how === "drop") document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    else document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true}));
}"""


@pytest.mark.parametrize("how", ["drop", "paste"])
def test_a_dropped_or_pasted_image_is_read(page, server, tmp_path, how):
    from playwright.sync_api import expect

    page.evaluate(SEND_A_DRAWN_SEVEN, how)
    expect(page.get_by_test_id("prediction")).to_have_text("7", timeout=20_000)
    expect(page.locator("#photo")).to_be_visible()


def test_without_a_checkpoint_the_page_says_how_to_train(chromium, tmp_path, mnist_root):
    from playwright.sync_api import expect

    from mnistcnn.serve.app import create_app

    (tmp_path / "runs").mkdir()
    with Served(create_app(tmp_path / "runs", "cpu", mnist_root)) as served:
        page = chromium.new_page()
        page.goto(served.url)
        expect(page.get_by_test_id("notice")).to_contain_text("train one with `mnistcnn train`")
        draw(page, SEVEN)
        expect(page.get_by_test_id("notice")).to_contain_text("mnistcnn train")
        expect(page.get_by_test_id("prediction")).to_have_text("")
        shot(page, tmp_path, "no-checkpoint")
        page.close()
