"""serve part two's API (TestClient): generate, style, morph, latent plane, arithmetic, progress, the test-set
map, mistakes, test-image detail with neighbours, per-epoch snapshots."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnistcnn import data
from tests.test_serve import TestClient

PHOTO = "tests/data/photos/single-000.jpg"  # a phone photo of a 3 on paper


@pytest.fixture(scope="module")
def runs(train_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("views") / "runs"
    train_run(root / "mynet", epochs=3, batch_size=64, keep_epochs=True)
    for kind in ("vae", "cvae", "gan"):
        train_run(root / kind, model=kind, epochs=2, batch_size=32, train_limit=256)
    return root


@pytest.fixture
def client(runs, mnist_root, monkeypatch):
    from mnistcnn.serve.app import create_app

    monkeypatch.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    return TestClient(create_app(runs, "cpu", mnist_root), raise_server_exceptions=False)


def pixels(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_generate_gives_the_digits_asked_for(client):
    r = client.get("/api/generate", params={"run": "gan", "digit": 3, "n": 4, "seed": 1})
    assert r.status_code == 200, r.text
    images = [pixels(u) for u in r.json()["images"]]
    assert len(images) == 4 and all(i.shape == (28, 28) for i in images)
    again = client.get("/api/generate", params={"run": "gan", "digit": 3, "n": 4, "seed": 1}).json()
    assert again["images"] == r.json()["images"]  # same seed, same digits
    other = client.get("/api/generate", params={"run": "gan", "digit": 3, "n": 4, "seed": 2}).json()
    assert other["images"] != r.json()["images"]
    assert client.get("/api/generate", params={"run": "vae", "n": 3}).status_code == 200


@pytest.mark.parametrize(
    "params, status, words",
    [
        ({"run": "vae", "digit": 3}, 400, "leave digit out"),
        ({"run": "mynet"}, 400, "needs a vae, cvae or gan"),
        ({"run": "gan", "n": 0}, 400, "n must be between 1 and 100"),
        ({"run": "gan", "digit": 12}, 400, "digit"),
        ({"run": "nope"}, 404, "no run named"),
    ],
)
def test_generate_refuses_with_one_line(client, params, status, words):
    r = client.get("/api/generate", params=params)
    assert r.status_code == status and words in r.json()["error"], r.text


def test_style_writes_ten_digits_in_order(client):
    with open(PHOTO, "rb") as f:
        r = client.post("/api/style?run=cvae", content=f.read(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["images"]) == 10 and 0 <= body["digit"] <= 9
    assert all(pixels(u).shape == (28, 28) for u in body["images"])
    assert len({u for u in body["images"]}) > 1  # ten different digits, not one image ten times
    wrong = client.post(
        "/api/style?run=gan", content=Path(PHOTO).read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    assert wrong.status_code == 400 and "cvae" in wrong.json()["error"]


def test_interpolate_between_test_images_and_pictures(client):
    with open(PHOTO, "rb") as f:
        url = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
    r = client.post("/api/interpolate?run=vae", json={"a": {"index": 0}, "b": {"png": url}, "steps": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["images"]) == len(body["pixels"]) == 6 and len(body["ends"]) == 2
    g = client.post("/api/interpolate?run=gan", json={"a": {"digit": 1}, "b": {"digit": 7}, "steps": 5})
    assert g.status_code == 200 and len(g.json()["images"]) == 5, g.text
    for body, words in [
        ({"a": {"index": 0}, "b": {"index": 10**6}}, "b.index must be a test image"),
        ({"a": {"png": "not base64!"}, "b": {"index": 0}}, "not base64"),
        ({"a": {"index": 0}}, "b must be one of"),
        ({"a": {"index": 0}, "b": {"index": 1}, "steps": 1000}, "steps must be between"),
    ]:
        r = client.post("/api/interpolate?run=vae", json=body)
        assert r.status_code == 400 and words in r.json()["error"], (body, r.text)
    r = client.post("/api/interpolate?run=gan", json={"a": {"index": 0}, "b": {"digit": 1}})
    assert r.status_code == 400 and "no encoder" in r.json()["error"]


def test_latent_plane_and_its_points_decode(client):
    plane = client.get("/api/latent?run=cvae").json()
    assert plane["conditional"] and len(plane["points"]["x"]) == len(plane["points"]["label"]) > 0
    a = client.get("/api/latent/decode", params={"run": "cvae", "u": -2, "v": 0, "digit": 4}).json()["image"]
    b = client.get("/api/latent/decode", params={"run": "cvae", "u": 2, "v": 1, "digit": 4}).json()["image"]
    assert pixels(a).shape == (28, 28) and a != b
    r = client.get("/api/latent/decode", params={"run": "cvae", "u": 99, "v": 0})
    assert r.status_code == 400 and "u must be between" in r.json()["error"]
    r = client.get("/api/latent/decode", params={"run": "cvae", "u": "nan", "v": 0})
    assert r.status_code == 400
    assert client.get("/api/latent?run=gan").json()["points"]["x"] == []


def test_arithmetic_decodes_a_minus_b_plus_c(client):
    r = client.get("/api/arithmetic", params={"run": "vae", "a": 0, "b": 1, "c": 2})
    assert r.status_code == 200, r.text
    assert len(r.json()["inputs"]) == 3 and pixels(r.json()["image"]).shape == (28, 28)
    r = client.get("/api/arithmetic", params={"run": "gan", "a": 0, "b": 1, "c": 2})
    assert r.status_code == 400


def test_gan_progress_and_snapshots_listed(client):
    p = client.get("/api/runs/gan/progress").json()
    assert p["epochs"] == [1, 2] and len(p["images"]) == 2
    assert client.get("/api/runs/mynet/epochs").json() == {"model": "mynet", "epochs": [1, 2, 3]}
    assert client.get("/api/runs/vae/epochs").json()["epochs"] == []
    assert client.get("/api/runs/vae/progress").status_code == 400


def test_predict_replays_each_epoch_and_places_the_digit_on_the_map(client):
    photo = Path(PHOTO).read_bytes()
    answers = []
    for epoch in (1, 3):
        r = client.post(
            f"/api/predict?run=mynet&epoch={epoch}&map=1",
            content=photo,
            headers={"Content-Type": "image/jpeg"},
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    assert answers[0]["probabilities"] != answers[1]["probabilities"]  # different weights, different reading
    assert len(answers[0]["map"]) == 2
    r = client.post("/api/predict?run=mynet&epoch=9", content=photo, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 404 and "kept: 1, 2, 3" in r.json()["error"]
    r = client.post("/api/predict?run=gan", content=photo, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 400 and "MyNet" in r.json()["error"]


def test_map_and_mistakes_agree_with_the_confusion_matrix(client):
    evaluation = client.get("/api/model/evaluation?run=mynet").json()
    answer = client.get("/api/map?run=mynet")
    assert answer.headers["content-type"] == "application/json"
    m = answer.json()
    assert client.get("/api/map?run=mynet").content == answer.content  # encoded once, the same bytes
    wrong = client.get("/api/map?run=gan")
    assert wrong.status_code == 400 and "MyNet" in wrong.json()["error"]
    assert m["n"] == evaluation["n"] == len(m["x"]) == len(m["label"])
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (m["label"], m["pred"]), 1)
    assert confusion.tolist() == evaluation["confusion"]
    t, p = max(((i, j) for i in range(10) for j in range(10) if i != j), key=lambda c: confusion[c])
    cell = client.get("/api/mistakes", params={"run": "mynet", "true": t, "pred": p}).json()
    assert cell["count"] == confusion[t, p] and len(cell["images"]) == min(100, cell["count"])
    conf = [i["confidence"] for i in cell["images"]]
    assert conf == sorted(conf, reverse=True)
    index = cell["images"][0]["index"]
    d = client.get(f"/api/test/{index}", params={"run": "mynet", "features": 1, "neighbours": 5}).json()
    assert d["label"] == t and d["prediction"] == p and len(d["neighbours"]) == 5
    dist = [n["distance"] for n in d["neighbours"]]
    assert dist == sorted(dist) and set(d["features"]) == {"conv1", "conv2"}
    assert client.get("/api/mistakes", params={"run": "mynet", "true": 10, "pred": 1}).status_code == 400
    assert client.get("/api/test/99999999?run=mynet").status_code == 400


def test_test_image_pickers(client):
    r = client.get("/api/test", params={"digit": 7, "n": 3, "seed": 5}).json()
    assert len(r["images"]) == 3 and all(i["label"] == 7 for i in r["images"])
    assert client.get("/api/test", params={"n": 0}).status_code == 400


def test_a_folder_of_generative_runs_only_says_so_and_still_generates(runs, tmp_path, mnist_root):
    import shutil

    from mnistcnn.serve.app import create_app

    only = tmp_path / "runs"
    shutil.copytree(runs / "cvae", only / "cvae")
    client = TestClient(create_app(only, "cpu", mnist_root), raise_server_exceptions=False)
    r = client.get("/api/model")
    assert r.status_code == 404
    assert "no MyNet checkpoint" in r.json()["error"] and "cvae" in r.json()["error"]
    assert client.get("/api/generate", params={"run": "cvae", "digit": 2, "n": 2}).status_code == 200
