"""Signals in every phase of `mnistcnn serve`, sent to a real process: while it starts (before the URL), during
its warm-up read, while a slow first evaluation runs, with predictions in flight, and two quick Ctrl-C. Each
phase is made slow by a patch the process applies to itself (PHASE below), which says on stderr when it is in it.
Always: exit 0, every request in flight answered with JSON (200 or 503), no traceback."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_serve import seven  # noqa: E402 - a clear 7 as a PNG

SRC = Path(__file__).parents[1] / "src"
PHASE = """
import os, sys, time
import mnistcnn.serve.app as app_module
import mnistcnn.serve.models as models
phase = os.environ["SLOW_PHASE"]

def slow(real, name, seconds):
    def wrapped(*a, **k):
        print(f"IN {name}", file=sys.stderr, flush=True)
        time.sleep(seconds)
        return real(*a, **k)
    return wrapped

if phase == "start":
    app_module.create_app = slow(app_module.create_app, "start", 60)
elif phase == "warm-up":
    app_module.warm_up = slow(app_module.warm_up, "warm-up", 60)
elif phase == "evaluation":  # inside torch, as a real evaluation is (the interpreter cannot finalize under it)
    import torch

    def busy(self):
        print("IN evaluation", file=sys.stderr, flush=True)
        a, end = torch.randn(400, 400), time.monotonic() + 60
        while time.monotonic() < end:
            a = torch.tanh(a @ a)
    models.Loaded._evaluate = busy
elif phase == "predictions":
    real = app_module.read_upload
    app_module.read_upload = lambda *a, **k: real(*a, **k) if "warm-up" in a[2] else slow(real, "predict", 4)(*a, **k)
from mnistcnn.cli import app
app()
"""


@pytest.fixture(scope="module")
def runs(train_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("signals") / "runs"
    train_run(root / "first", epochs=1)
    return root


def start(runs: Path, mnist_root: Path, phase: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "SLOW_PHASE": phase}
    args = ["serve", str(runs), "--port", "0", "--device", "cpu", "--data-dir", str(mnist_root)]
    return subprocess.Popen(
        [sys.executable, "-c", PHASE, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(stream, pattern: str, lines: list[str]) -> re.Match:
    for line in stream:
        lines.append(line)
        if found := re.search(pattern, line):
            return found
    pytest.fail("".join(lines))


def finish(proc: subprocess.Popen, seen: list[str]) -> str:
    assert proc.wait(30) == 0
    err = "".join(seen) + proc.stderr.read()
    assert "Traceback" not in err and "Error" not in err.replace("error", ""), err
    return err


@pytest.mark.parametrize("phase", ["start", "warm-up"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_starting_stops_at_once_exit_0(runs, mnist_root, phase, sig):
    proc = start(runs, mnist_root, phase)
    seen: list[str] = []
    wait_for(proc.stderr, f"IN {phase}", seen)
    t0 = time.monotonic()
    proc.send_signal(sig)
    err = finish(proc, seen)
    assert time.monotonic() - t0 < 10 and "stopped before serving" in err
    assert "serving mnistcnn" not in proc.stdout.read()


def url_of(proc) -> str:
    return wait_for(proc.stdout, r"http://\S+", [])[0]


def test_sigterm_during_a_slow_first_evaluation_answers_503_json_and_exits_0(runs, mnist_root):
    proc = start(runs, mnist_root, "evaluation")
    url = url_of(proc)
    answers = []
    asking = threading.Thread(
        target=lambda: answers.append(httpx.get(url + "api/model/evaluation", timeout=30))
    )
    asking.start()
    seen: list[str] = []
    wait_for(proc.stderr, "IN evaluation", seen)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    asking.join(30)
    finish(proc, seen)
    assert time.monotonic() - t0 < 10  # the evaluation's 60 s are not waited for
    (r,) = answers
    assert r.status_code == 503 and "stop" in r.json()["error"]


@pytest.mark.parametrize("twice", [False, True], ids=["one Ctrl-C", "two quick Ctrl-C"])
def test_ctrl_c_with_predictions_in_flight_answers_each_with_json_and_exits_0(runs, mnist_root, twice):
    proc = start(runs, mnist_root, "predictions")
    url = url_of(proc)
    answers = []

    def ask() -> None:
        try:
            r = httpx.post(
                url + "api/predict", content=seven(), headers={"content-type": "image/png"}, timeout=30
            )
            answers.append((r.status_code, r.json()))
        except httpx.HTTPError as e:  # a request refused at the door after the first signal is fine too
            answers.append((type(e).__name__, None))

    clients = [threading.Thread(target=ask) for _ in range(4)]
    for c in clients:
        c.start()
    seen: list[str] = []
    wait_for(proc.stderr, "IN predict", seen)
    time.sleep(0.3)  # the others reach the server
    proc.send_signal(signal.SIGINT)
    if twice:
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
    for c in clients:
        c.join(30)
    finish(proc, seen)
    assert len(answers) == 4
    statuses = [status for status, _ in answers]
    assert all(status in (200, 503) for status in statuses), answers
    assert all(body and ("prediction" in body or "stop" in body["error"]) for _, body in answers), answers
    assert json.dumps(answers)  # every answer was JSON
    if twice:
        assert 503 in statuses  # nobody waited for the 4 s reads
