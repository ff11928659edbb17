"""serve: training from the page (issue 20) — GET/POST /api/train, stop and resume, the child process's life.

The runs train on the fixture (2,000 images), started as real `mnistcnn train` children; the server's own exit
(SIGTERM, SIGKILL) is tested with a real `mnistcnn serve` process.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from pathlib import Path

import pytest
from test_serve import TestClient, start

from mnistcnn import recipes
from mnistcnn.config import load_config
from mnistcnn.outputs import LOCK
from mnistcnn.serve.app import create_app
from mnistcnn.serve.runs import locked_by

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def finished(train_run, tmp_path_factory) -> Path:
    """A runs folder holding one finished 1-epoch run, `done`."""
    root = tmp_path_factory.mktemp("train") / "runs"
    train_run(root / "done", epochs=1)
    return root


@pytest.fixture
def serving(mnist_root):
    """`serving(target, **create_app_args)` → the app; whatever its page started is stopped afterwards."""
    made = []

    def make(target: Path, **kwargs):
        made.append(create_app(target, "cpu", mnist_root, **kwargs))
        return made[-1]

    yield make
    for app in made:
        app.state.trainer.close(wait=20)


def wait_for(check, timeout: float = 90.0, every: float = 0.3):
    """Poll `check()` until it returns something true; that value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := check():
            return value
        time.sleep(every)
    pytest.fail(f"still waiting after {timeout} s")


def row_of(client, name: str) -> dict:
    return next(r for r in client.get("/api/runs").json()["runs"] if r["name"] == name)


def epochs_logged(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return [r["epoch"] for r in map(json.loads, lines) if r["type"] == "epoch"]


def test_the_form_lists_the_recipes_and_says_when_training_is_off(finished, serving):
    on = TestClient(serving(finished, train=True)).get("/api/train").json()
    assert on["allowed"] and on["why"] is None and on["active"] is None and on["last"] is None
    assert [r["name"] for r in on["recipes"]] == recipes.names() and on["default"] == "fast"
    fast = next(r for r in on["recipes"] if r["name"] == "fast")
    assert fast["model"] == "mynet" and fast["epochs"] >= 1 and fast["batch_size"] >= 1 and fast["why"]
    assert fast["lr"] == load_config("fast").lr  # the form is prefilled with what the recipe trains

    off = TestClient(serving(finished, train=False, train_off="off for a reason"))
    assert off.get("/api/train").json() | {"recipes": None, "default": None} == {
        "allowed": False,
        "why": "off for a reason",
        "recipes": None,
        "default": None,
        "active": None,
        "last": None,
    }
    refused = off.post("/api/train", json={"recipe": "fast"})
    assert refused.status_code == 403 and refused.json() == {"error": "off for a reason"}

    one_run = TestClient(serving(finished / "done", train=True)).get("/api/train")
    assert not one_run.json()["allowed"] and "serve a runs folder" in one_run.json()["why"]


@pytest.mark.parametrize(
    "body, field, says",
    [
        ({"epochs": 1}, "recipe", "recipe is required"),
        ({"recipe": "fats"}, "recipe", "no recipe named 'fats'"),
        ({"recipe": "../../etc/passwd"}, "recipe", "no recipe named"),  # a name, never a path
        ({"recipe": "/tmp/evil.toml"}, "recipe", "no recipe named"),
        ({"recipe": "fast", "epochs": 0}, "epochs", "epochs must be > 0"),
        ({"recipe": "fast", "epochs": "3"}, "epochs", "epochs must be an integer"),
        ({"recipe": "fast", "lr": True}, "lr", "lr must be a finite number"),
        ({"recipe": "fast", "lr": 1e400}, "lr", "lr must be a finite number"),
        ({"recipe": "fast", "batch_size": 64, "train_limit": 10}, None, "larger than train_limit"),
        ({"recipe": "fast", "run_dir": "/etc"}, "run_dir", "run_dir cannot be set from the page"),
        ({"recipe": "fast", "device": "cuda"}, "device", "cannot be set from the page"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_field_and_starts_nothing(finished, serving, body, field, says):
    app = serving(finished, train=True)
    before = sorted(p.name for p in finished.iterdir())
    r = TestClient(app).post("/api/train", content=json.dumps(body), headers=JSON)
    assert r.status_code == 400 and says in r.json()["error"] and "\n" not in r.json()["error"]
    assert r.json().get("field") == field
    assert app.state.trainer.children == {} and sorted(p.name for p in finished.iterdir()) == before


@pytest.mark.parametrize(
    "headers, body, status, says",
    [
        ({"content-type": "text/plain"}, b'{"recipe": "fast"}', 415, "Content-Type text/plain is refused"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"recipe=fast", 415, "application/json"),
        ({}, b'{"recipe": "fast"}', 415, "Content-Type (none)"),
        (JSON, b'["fast"]', 400, "must be a JSON object"),
        (JSON, b'{"recipe": ', 400, "the body is not JSON"),
        (JSON | {"origin": "http://evil.example"}, b'{"recipe": "fast"}', 403, "cross-origin"),
        (JSON | {"host": "evil.example"}, b'{"recipe": "fast"}', 403, "does not answer for the host"),
        (JSON | {"sec-fetch-site": "cross-site"}, b'{"recipe": "fast"}', 403, "cross-origin"),
    ],
)
def test_state_changes_take_json_from_the_page_only(finished, serving, headers, body, status, says):
    """A page on another site can POST a form or text/plain to 127.0.0.1 unasked, never JSON; a rebinding
    name arrives with its own Host."""
    app = serving(finished, train=True)
    client = TestClient(app)
    for path in ("/api/train", "/api/runs/done/stop", "/api/runs/done/resume"):
        r = client.post(path, content=body, headers=headers)
        assert (r.status_code, says in r.json()["error"]) == (status, True), (path, r.text)
    assert app.state.trainer.children == {}


def test_a_run_is_started_stopped_resumed_and_finished(tmp_path, serving):
    root = tmp_path / "runs"
    root.mkdir()
    app = serving(root, train=True)
    with TestClient(app) as c:
        started = c.post("/api/train", json={"recipe": "fast", "epochs": 40, "batch_size": 64})
        assert started.status_code == 201, started.text
        name = started.json()["run"]
        assert row_of(c, name)["state"] == "training"  # listed before its folder exists
        again = c.post("/api/train", json={"recipe": "fast", "epochs": 1})
        assert again.status_code == 409 and name in again.json()["error"]
        assert c.get("/api/train").json()["active"] == name
        run = root / name
        wait_for(lambda: epochs_logged(run))
        assert c.post(f"/api/runs/{name}/stop", json={}).json() == {"run": name, "state": "stopping"}
        row = wait_for(lambda: (r := row_of(c, name))["state"] == "stopped" and r)
        assert row["resumable"] and "interrupted: saved" in row["message"] and (run / "last.pt").is_file()
        assert locked_by(run) is None and row["test_acc"] is None
        done = row["epochs_done"]
        assert done == max(epochs_logged(run)) and 1 <= done < 40
        later = c.post(f"/api/runs/{name}/resume", json={"epochs": done + 1})
        assert later.status_code == 200 and later.json() == {"run": name}
        row = wait_for(lambda: (r := row_of(c, name))["state"] == "finished" and r)
        assert row["test_acc"] > 0.5 and row["message"].startswith("test accuracy")
        assert epochs_logged(run) == list(range(1, done + 2)) and not row["resumable"]
        assert c.get("/api/train").json()["last"]["state"] == "finished"


def test_what_cannot_continue_is_refused_in_one_line(finished, serving):
    c = TestClient(serving(finished, train=True))
    done = c.post("/api/runs/done/resume", json={})
    assert done.status_code == 400 and "already trained 1 of 1 epochs" in done.json()["error"]
    assert c.post("/api/runs/done/resume", json={"epochs": "2"}).json()["field"] == "epochs"
    assert c.post("/api/runs/done/resume", json={"lr": 1}).json()["field"] == "lr"
    stop = c.post("/api/runs/done/stop", json={})
    assert stop.status_code == 409 and "not started from this page" in stop.json()["error"]
    for action in ("stop", "resume"):
        assert c.post(f"/api/runs/nope/{action}", json={}).status_code == 404
    with open(finished / "done" / LOCK, "a") as held:  # another `mnistcnn train` writes it
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = c.post("/api/runs/done/resume", json={"epochs": 2})
        assert busy.status_code == 409 and "in use by another mnistcnn train" in busy.json()["error"]
        assert row_of(c, "done")["training"] is False  # finished: its test record says so
    assert c.post("/api/runs/done/resume", json={"epochs": 2}).status_code == 200
    row = wait_for(lambda: (r := row_of(c, "done"))["state"] not in ("training", "stopping") and r)
    assert row["state"] == "finished" and epochs_logged(finished / "done") == [1, 2], row["message"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_child_never_outlives_the_server(tmp_path, mnist_root, sig):
    """SIGTERM: serve stops its child (it saves last.pt) and exits 0; SIGKILL: the child's death signal."""
    import httpx

    root = tmp_path / "runs"
    root.mkdir()
    proc, url, _ = start(
        [str(root), "--port", "0", "--device", "cpu", "--data-dir", str(mnist_root)], tmp_path
    )
    try:
        r = httpx.post(url + "api/train", json={"recipe": "fast", "epochs": 40, "batch_size": 64}, timeout=30)
        assert r.status_code == 201, r.text
        run = root / r.json()["run"]
        wait_for(lambda: epochs_logged(run))
        holder = int(locked_by(run))
        assert holder != proc.pid
        proc.send_signal(sig)
        code = proc.wait(60)
    finally:
        proc.kill()
    wait_for(lambda: not os.path.exists(f"/proc/{holder}") or _zombie(holder), timeout=60)
    assert (run / "last.pt").is_file() and locked_by(run) is None
    assert (
        max(epochs_logged(run)) < 40 and '"type":"test"' not in (run / "metrics.jsonl").read_text()
    )  # stopped
    if sig == signal.SIGTERM:
        assert code == 0 and "stopping" in proc.stderr.read()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def test_training_is_off_beyond_loopback_unless_allowed(finished, tmp_path):
    import httpx

    for allow, warned in ((False, False), (True, True)):
        args = [str(finished), "--host", "0.0.0.0", "--port", "0"] + (["--allow-train"] if allow else [])
        proc, url, _ = start(args, tmp_path)
        try:
            form = httpx.get(url + "api/train", timeout=30).json()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        assert form["allowed"] == allow and ("--allow-train" in (form["why"] or "")) != allow
        assert ("warning: --allow-train" in proc.stderr.read()) == warned
