"""The page's views of serve part two (issue 20) in a real browser: Generate, Map, Mistakes, Epochs, Train, and
the Read tab's photo handling. The runs folder holds a MyNet run trained with --keep-epochs (3 epochs), a MyNet run
without snapshots, a cvae and a gan, all trained on the fixture in seconds. Each test saves a screenshot.

Usage: `OMP_NUM_THREADS=1 python -m pytest tests/browser/test_page_views.py -q -s`
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from test_page import SEVEN, Served, draw_on, shot  # `chromium`, `page`, `allowed`: tests/conftest.py

PHONE = {"width": 390, "height": 844}
NO_SIDEWAYS = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"


@pytest.fixture(scope="session")
def runs(train_run, tmp_path_factory) -> Path:
    """plain-1ep first, so that fixture-3ep (the newest MyNet run) is the served default."""
    root = tmp_path_factory.mktemp("views") / "runs"
    train_run(root / "plain-1ep", epochs=1)
    train_run(root / "fixture-3ep", epochs=3, keep_epochs=True)
    train_run(root / "cvae-1", model="cvae", epochs=1, train_limit=500)
    train_run(root / "gan-2", model="gan", epochs=2, train_limit=500)
    return root


@pytest.fixture(scope="session")
def server(runs, mnist_root):
    from mnistcnn.serve.app import create_app

    app = create_app(runs, "cpu", mnist_root, train=True)
    try:
        with Served(app) as served:
            yield served
    finally:
        app.state.trainer.close(wait=20)  # a run the Train tests started


def png_size(src: str) -> tuple[str, tuple[int, int]]:
    from PIL import Image

    head, b64 = src.split(",", 1)
    assert head == "data:image/png;base64"
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    return img.format, img.size


def srcs(locator) -> list[str]:
    return locator.evaluate_all("imgs => imgs.map((i) => i.src)")


def open_generate(page, run: str):
    from playwright.sync_api import expect

    page.get_by_test_id("tab-generate").click()
    expect(page.get_by_test_id("gen-run").locator("option")).to_have_count(2)  # cvae-1, gan-2: no MyNet run
    page.get_by_test_id("gen-run").select_option(run)


def test_drawing_in_generate_writes_every_digit_in_your_style(page, tmp_path):
    from playwright.sync_api import expect

    open_generate(page, "cvae-1")
    with page.expect_response(lambda r: "/api/style?run=cvae-1" in r.url) as answer:
        draw_on(page, "gen-pad", SEVEN)
    images = page.get_by_test_id("handwriting").locator("img")
    expect(images).to_have_count(10)
    assert images.evaluate_all("imgs => imgs.map((i) => i.alt)") == [
        f"digit {d} in your style" for d in range(10)
    ]
    assert srcs(images) == answer.value.json()["images"]  # in the server's order: 0-9
    assert [png_size(s) for s in srcs(images)] == [("PNG", (28, 28))] * 10
    expect(page.get_by_test_id("morph").locator("img")).to_have_count(10)
    expect(page.get_by_test_id("morph-pixels").locator("img")).to_have_count(10)
    expect(page.get_by_test_id("arithmetic").locator("img")).to_have_count(4)
    arithmetic = page.expect_response(lambda r: "/api/arithmetic" in r.url)
    with (
        arithmetic as answer,
        page.expect_request(lambda r: "/api/test?digit=7" in r.url and "seed=1" in r.url) as picked,
    ):
        page.get_by_role("button", name="another a").click()
    index = picked.value.response().json()["images"][0]["index"]
    assert f"a={index}&" in answer.value.url
    page.wait_for_load_state("networkidle")
    shot(page, tmp_path, "generate")


def test_dragging_on_the_latent_map_decodes_live_one_request_at_a_time(page, tmp_path):
    from playwright.sync_api import expect

    flight = {"now": 0, "max": 0}

    def went(r):
        if "/api/latent/decode" in r.url:
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])

    def back(r):
        if "/api/latent/decode" in r.url:
            flight["now"] -= 1

    page.on("request", went)
    page.on("requestfinished", back)
    page.on("requestfailed", back)
    open_generate(page, "cvae-1")
    canvas, digit = page.get_by_test_id("latent-map"), page.get_by_test_id("latent-digit")
    expect(canvas).to_have_attribute("data-frames", "1")  # the plane's centre, decoded when it opens
    first = digit.get_attribute("src")
    assert png_size(first) == ("PNG", (28, 28))
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 0.1 * box["width"], box["y"] + 0.1 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.9 * box["width"], box["y"] + 0.85 * box["height"], steps=40)
    page.mouse.up()
    page.wait_for_load_state("networkidle")
    frames = int(canvas.get_attribute("data-frames"))
    assert frames >= 5, frames
    assert float(canvas.get_attribute("data-ms")) > 0
    assert digit.get_attribute("src") != first
    assert flight["max"] == 1
    assert digit.evaluate("i => getComputedStyle(i).imageRendering") == "pixelated"
    shot(page, tmp_path, "latent")


def test_a_gan_samples_morphs_and_shows_its_epochs(page, tmp_path):
    from playwright.sync_api import expect

    open_generate(page, "gan-2")
    samples = page.get_by_test_id("samples").locator("img")
    expect(samples).to_have_count(30)
    before = srcs(samples)
    page.get_by_test_id("gan-digit").select_option("3")
    expect(samples.first).to_have_attribute("alt", "sample 1 of a 3")
    with page.expect_response(lambda r: "/api/generate" in r.url and "digit=3" in r.url):
        page.get_by_test_id("gan-new").click()
    expect(samples).to_have_count(30)
    assert srcs(samples) != before
    expect(page.get_by_test_id("morph").locator("img")).to_have_count(10)
    with page.expect_request(lambda r: "/api/interpolate" in r.url) as sent:
        page.get_by_test_id("src-b-digit").select_option("2")
    assert sent.value.post_data_json["b"] == {"digit": 2}
    slider = page.get_by_test_id("gan-epoch")
    assert slider.get_attribute("max") == "1"
    last = page.get_by_test_id("gan-progress").get_attribute("src")
    slider.fill("0")
    expect(page.locator("#gan-epoch-value")).to_have_text("1")
    assert page.get_by_test_id("gan-progress").get_attribute("src") != last
    expect(page.get_by_test_id("gen-draw")).to_be_hidden()  # a gan reads no digit
    shot(page, tmp_path, "generate-gan")


def test_a_generative_run_charts_its_epoch_loss_and_test_loss(page, tmp_path):
    from playwright.sync_api import expect

    page.get_by_test_id("tab-runs").click()
    row = page.get_by_test_id("runs").get_by_role("row", name="cvae-1")
    expect(row.locator("td").nth(3)).to_contain_text("loss ")  # no accuracy: its test loss
    row.get_by_role("button", name="Show the curves of run cvae-1").click()
    expect(page.get_by_test_id("chart-caption")).to_contain_text("1 epoch(s); test loss ")
    shot(page, tmp_path, "runs-cvae")
    gan = page.get_by_test_id("runs").get_by_role("row", name="gan-2")
    expect(gan.locator("td").nth(3)).to_have_text("–")  # its held-out loss is the discriminator's: no score
    gan.get_by_role("button", name="Show the curves of run gan-2").click()
    expect(page.get_by_test_id("chart-caption")).to_contain_text("2 epoch(s); test D loss ")


@pytest.mark.parametrize("page", [PHONE], indirect=True, ids=["phone"])
def test_a_phone_shows_generate_and_map_whole(page, tmp_path):
    from playwright.sync_api import expect

    open_generate(page, "cvae-1")
    draw_on(page, "gen-pad", SEVEN)
    expect(page.get_by_test_id("handwriting").locator("img")).to_have_count(10)
    expect(page.get_by_test_id("morph").locator("img")).to_have_count(10)
    assert page.evaluate(NO_SIDEWAYS)
    shot(page, tmp_path, "phone-generate")
    page.get_by_test_id("tab-map").click()
    expect(page.get_by_test_id("map-info")).to_contain_text("accuracy", timeout=60_000)
    assert page.evaluate(NO_SIDEWAYS)
    shot(page, tmp_path, "phone-map")


def test_the_map_shows_each_test_digit_on_hover_and_yours_as_a_star(page, tmp_path):
    from playwright.sync_api import expect

    page.get_by_test_id("tab-map").click()
    expect(page.get_by_test_id("map-info")).to_contain_text("1,000 test images", timeout=60_000)
    canvas = page.get_by_test_id("map")
    box = canvas.bounding_box()
    x, y = page.evaluate("() => [M.sx[0], M.sy[0]]")  # test image 0's dot
    with page.expect_request(lambda r: r.url.split("?")[0].endswith("/api/test/0")):
        page.mouse.move(box["x"] + x, box["y"] + y)
    card = page.get_by_test_id("map-card")
    expect(card).to_be_visible()
    expect(card).to_contain_text("#0: a 7")
    expect(card.get_by_role("listitem")).to_have_count(10)
    with page.expect_response(lambda r: "/api/predict" in r.url and "map=1" in r.url) as answer:
        draw_on(page, "map-pad", SEVEN)
    where = answer.value.json()["map"]
    expect(canvas).to_have_attribute("data-pad", f"{where[0]:.4f},{where[1]:.4f}")
    expect(page.get_by_test_id("map-reading")).to_contain_text("reads 7")
    page.mouse.move(box["x"] + x, box["y"] + y)
    shot(page, tmp_path, "map")
    page.get_by_test_id("tab-read").click()  # the Read pad's digit is placed too, once the map is loaded
    with page.expect_request(lambda r: "/api/predict" in r.url and "map=1" in r.url):
        draw_on(page, "pad", [[(0.5, 0.15), (0.5, 0.85)]])


def test_a_confusion_cell_opens_its_images_and_one_its_neighbours(page, tmp_path):
    from playwright.sync_api import expect

    page.get_by_test_id("tab-mistakes").click()
    matrix = page.get_by_test_id("mistake-matrix")
    expect(matrix.locator("tr")).to_have_count(11, timeout=60_000)
    cells = matrix.locator("button.cell").evaluate_all(
        "bs => bs.map((b) => [...b.dataset.cell.split(',').map(Number), Number(b.textContent)])"
    )
    wrong = max((c for c in cells if c[0] != c[1]), key=lambda c: c[2])
    right = max((c for c in cells if c[0] == c[1]), key=lambda c: c[2])
    for t, p, n in (right, wrong):  # the diagonal's biggest cell holds over 100 of the 1,000: 100 shown
        with page.expect_response(lambda r, t=t, p=p: f"/api/mistakes?true={t}&pred={p}" in r.url) as answer:
            matrix.locator(f"button[data-cell='{t},{p}']").click()
        assert answer.value.json()["count"] == n
        expect(page.get_by_test_id("mistakes").locator("img")).to_have_count(min(n, 100))
    first = page.get_by_test_id("mistakes").locator("button").first
    expect(first).to_contain_text("%")
    first.click()
    detail = page.get_by_test_id("mistake-detail")
    expect(detail).to_be_visible()
    expect(page.get_by_test_id("neighbours").locator("img")).to_have_count(8, timeout=60_000)
    expect(detail.locator("#detail-conv1")).to_be_visible()
    expect(detail.locator("#detail-bars").get_by_role("listitem")).to_have_count(10)
    expect(page.locator("#detail-title")).to_contain_text(f"a {wrong[0]}, read as {wrong[1]}")
    shot(page, tmp_path, "mistakes")


def test_the_epoch_slider_replays_your_digit_through_each_snapshot(page, tmp_path):
    from playwright.sync_api import expect

    page.get_by_test_id("tab-epochs").click()
    expect(page.get_by_test_id("epochs-run")).to_have_value("fixture-3ep")
    slider = page.get_by_test_id("epoch-slider")
    expect(slider).to_have_attribute("max", "2")
    with page.expect_request(lambda r: "epoch=3" in r.url and "run=fixture-3ep" in r.url):
        draw_on(page, "epochs-pad", SEVEN)
    prediction = page.get_by_test_id("epochs-prediction")
    expect(prediction).to_have_attribute("data-epoch", "3")
    bars = page.get_by_test_id("epochs-bars")
    at3 = bars.inner_text()
    with page.expect_response(lambda r: "/api/predict" in r.url and "epoch=1" in r.url) as answer:
        slider.fill("0")
    expect(prediction).to_have_attribute("data-epoch", "1")
    assert answer.value.json()["probabilities"] != []
    expect(bars).not_to_have_text(at3)  # epoch 1 and epoch 3 read the same 7 with other probabilities
    expect(page.locator("#epochs-conv1")).to_be_visible()
    expect(page.get_by_test_id("epoch-value")).to_have_text("1")
    shot(page, tmp_path, "epochs")
    page.get_by_test_id("epochs-run").select_option("plain-1ep")
    expect(page.get_by_test_id("epochs-none")).to_contain_text("mnistcnn train --keep-epochs")
    page.get_by_test_id("epochs-run").select_option("gan-2")
    expect(page.get_by_test_id("epochs-progress")).to_be_visible()
    expect(slider).to_have_attribute("max", "1")


def photo_of_a_big_seven(path: Path, size=(8000, 6000)) -> Path:
    """A phone-camera-sized photo, 8000×6000 by default: a dark 7 on light paper (48 MP: over the server's 40 MP)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (8000, 6000), 235)
    ImageDraw.Draw(img).line([(2800, 1300), (5200, 1300), (3700, 4900)], fill=30, width=300, joint="curve")
    img = img.resize(size) if size != img.size else img
    img.save(path, quality=80)
    return path


# What the page sends as an image body, recorded in the page (Playwright sees no blob bodies): size and pixels.
RECORD_BODIES = """
window.sentBodies = [];
const realFetch = window.fetch;
window.fetch = async (url, options) => {
  const body = options && options.body;
  if (body instanceof Blob) {
    const bitmap = await createImageBitmap(body);
    window.sentBodies.push({url: String(url), bytes: body.size, type: body.type, size: [bitmap.width, bitmap.height]});
  }
  return realFetch(url, options);
};
"""


def test_a_big_photo_goes_up_shrunk_to_2_mp_and_clears_the_pad(page, tmp_path):
    from playwright.sync_api import expect

    page.add_init_script(RECORD_BODIES)
    page.reload()
    draw_on(page, "pad", [[(0.5, 0.15), (0.5, 0.85)]])
    expect(page.get_by_test_id("prediction")).not_to_have_text("", timeout=20_000)
    path = photo_of_a_big_seven(tmp_path / "big.jpg")
    with page.expect_request(lambda r: "/api/predict" in r.url, timeout=60_000) as sent:
        page.get_by_test_id("upload").set_input_files(str(path))
    assert sent.value.headers["content-type"] == "image/jpeg"
    expect(page.get_by_test_id("prediction")).to_have_text("7", timeout=20_000)
    body = page.evaluate("() => window.sentBodies.at(-1)")
    assert body["type"] == "image/jpeg" and body["size"] == [
        1632,
        1224,
    ]  # 8000×6000 scaled by √(2 MP / 48 MP)
    assert body["bytes"] < path.stat().st_size
    assert page.locator("#photo").get_attribute("data-sent") == "1632×1224"
    ink = page.evaluate(
        "() => { const c = document.getElementById('pad');"
        " return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.reduce((s, v) => s + v, 0); }"
    )
    assert ink == 255 * 280 * 280  # alpha only: the old stroke is gone
    small = photo_of_a_big_seven(tmp_path / "small.png", (800, 600))
    page.get_by_test_id("upload").set_input_files(str(small))  # at most 2 MP: sent as it is
    expect(page.locator("#photo")).to_have_attribute("data-sent", "800×600")
    assert page.evaluate("() => window.sentBodies.at(-1)")["type"] == "image/png"
    shot(page, tmp_path, "big-photo")


def test_a_bad_value_in_the_train_form_shows_the_servers_error(page, server, tmp_path, allowed):
    from playwright.sync_api import expect

    allowed.append("status of 400")
    page.get_by_test_id("tab-train").click()
    epochs = page.get_by_test_id("train-epochs")
    expect(epochs).not_to_have_value("")  # prefilled from the recipe
    expect(page.get_by_test_id("train-recipe")).to_have_value("fast")  # the form's first choice
    expect(page.get_by_test_id("train-lr")).not_to_have_value("")
    epochs.fill("0")
    with page.expect_response(
        lambda r: r.url.endswith("/api/train") and r.request.method == "POST"
    ) as answer:
        page.get_by_test_id("train-start").click()
    assert answer.value.status == 400
    assert answer.value.request.headers["content-type"] == "application/json"
    error = answer.value.json()
    expect(page.get_by_test_id("train-error")).to_have_text(error["error"])
    assert error["field"] == "epochs"
    expect(epochs).to_have_attribute("aria-invalid", "true")
    shot(page, tmp_path, "train-error")


def start_from_the_form(page, epochs: int, batch: int) -> str:
    page.get_by_test_id("tab-train").click()
    page.get_by_test_id("train-epochs").fill(str(epochs))
    page.get_by_test_id("train-batch_size").fill(str(batch))
    with page.expect_response(
        lambda r: r.url.endswith("/api/train") and r.request.method == "POST"
    ) as answer:
        page.get_by_test_id("train-start").click()
    assert answer.value.status == 201, answer.value.text()
    assert answer.value.request.post_data_json["epochs"] == epochs  # not the recipe's, filled in after typing
    return answer.value.json()["run"]


def test_a_run_started_from_the_form_trains_and_finishes_in_runs(page, server, tmp_path):
    from playwright.sync_api import expect

    name = start_from_the_form(page, 1, 64)
    expect(page.get_by_test_id("tab-runs")).to_have_attribute("aria-selected", "true")
    row = page.get_by_test_id("runs").get_by_role("row", name=name)
    expect(row).to_contain_text("%", timeout=120_000)  # its test accuracy
    # and its process has exited: the next test's Start is not refused as "one run at a time"
    expect(row).to_have_attribute("data-state", "finished", timeout=60_000)
    expect(page.locator("#notice")).to_contain_text(f"{name} finished: test accuracy")
    expect(page.get_by_test_id("chart")).to_have_attribute("data-epochs", "1")
    expect(page.locator("#chart-title")).to_contain_text(name)
    shot(page, tmp_path, "train-done")


def epoch_beyond(page, row, done: int, timeout_ms: int = 60_000) -> int:
    """Wait until the row's run has trained more than `done` epochs; how many it has."""
    for _ in range(timeout_ms // 200):
        now = int(row.locator("td").nth(2).inner_text().split("/")[0])
        if now > done:
            return now
        page.wait_for_timeout(200)
    raise AssertionError(f"the run did not pass epoch {done} in {timeout_ms} ms")


def test_a_run_is_stopped_resumed_and_stopped_again(page, server, tmp_path):
    from playwright.sync_api import expect

    name = start_from_the_form(page, 20, 32)
    row = page.get_by_test_id("runs").get_by_role("row", name=name)
    done = 0
    for k in range(2):
        stop = row.get_by_role("button", name=f"Stop run {name}")
        expect(stop).to_be_visible(timeout=60_000)
        done = epoch_beyond(page, row, done)  # a Stop during the start-up would leave nothing to resume
        with page.expect_request(lambda r: r.url.endswith(f"/api/runs/{name}/stop")) as sent:
            stop.click()
        assert sent.value.post_data == "{}" and sent.value.headers["content-type"] == "application/json"
        expect(row).to_have_attribute("data-state", "stopped", timeout=60_000)
        expect(page.locator("#notice")).to_contain_text("Resume continues from there")
        resume = row.get_by_role("button", name=f"Resume run {name}")
        expect(resume).to_be_visible()
        if k == 0:
            shot(page, tmp_path, "train-stopped")
            resume.click()
            expect(row).to_have_attribute("data-state", "training", timeout=60_000)
