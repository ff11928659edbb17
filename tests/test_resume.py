"""Interruption and exact resume: a real training subprocess is signalled at several moments, resumed, and must
end with weights bit-identical to an uninterrupted run (CPU, --deterministic)."""

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from mnistcnn import checkpoint, data
from mnistcnn.cli import app
from mnistcnn.engine import ENV_CPU_BF16

ARGS = shlex.split(
    "--epochs 2 --batch-size 16 --train-limit 2000 --lr 2e-3 --device cpu --precision fp32 --deterministic "
    "--log-every 1"
)
STEPS = 2 * 125
# the bf16 CPU path (what `auto` picks on AMX / AVX512-BF16 CPUs, forced here on any CPU): tiny, since bf16 is
# emulated and 5-8x slower on AVX2-only CPUs
BF16_ARGS = shlex.split(
    "--epochs 2 --batch-size 16 --train-limit 320 --lr 2e-3 --device cpu --precision auto --deterministic "
    "--log-every 1"
)
BF16_ENV = {ENV_CPU_BF16: "1"}


def env_for(mnist_root, extra=None):
    env = {**os.environ, data.ENV_SUMS: str(mnist_root / "SHA256SUMS"), "OMP_NUM_THREADS": "1"}
    return {**env, **(extra or {})}


def cli(*args, mnist_root, env=None):
    cmd = [sys.executable, "-m", "mnistcnn", "train", *map(str, args), "--data-dir", str(mnist_root)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env_for(mnist_root, env), timeout=300)


def weights_hash(run) -> str:
    state = checkpoint.load(run / "last.pt")["model"]
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode() + state[key].numpy().tobytes())
    return h.hexdigest()


def batch_steps(run) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["type"] == "batch"]


@pytest.fixture(scope="module")
def reference(mnist_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    proc = cli(*ARGS, "--run-dir", run, mnist_root=mnist_root)
    assert proc.returncode == 0, proc.stderr
    return run


def interrupt_at(mnist_root, run, at_step: int, sig, args=ARGS, env=None) -> subprocess.CompletedProcess:
    """Start training, send `sig` once metrics.jsonl shows `at_step` batches, return the finished process."""
    cmd = [
        sys.executable,
        "-m",
        "mnistcnn",
        "train",
        *args,
        "--data-dir",
        str(mnist_root),
        "--run-dir",
        str(run),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(mnist_root, env)
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and metrics.read_text().count('"type":"batch"') >= at_step:
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize(
    ("at_step", "sig"),
    [
        (20, signal.SIGINT),
        (125, signal.SIGTERM),
        (180, signal.SIGINT),
    ],  # mid-epoch 1, epoch boundary, epoch 2
)
def test_interrupted_and_resumed_run_is_bit_identical(reference, mnist_root, tmp_path, at_step, sig):
    run = tmp_path / "run"
    stopped = interrupt_at(mnist_root, run, at_step, sig)
    assert stopped.returncode == 128 + sig, stopped.stdout + stopped.stderr
    assert f"mnistcnn train --resume {run}" in stopped.stderr
    saved = checkpoint.load(run / "last.pt")
    assert at_step <= saved["step"] < STEPS
    assert batch_steps(run) == list(range(1, saved["step"] + 1))

    resumed = cli("--resume", run, mnist_root=mnist_root)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert weights_hash(run) == weights_hash(reference)
    assert batch_steps(run) == list(range(1, STEPS + 1))  # appended, nothing twice
    ours = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    theirs = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in ours if r["type"] == "batch"] == [
        r["loss"] for r in theirs if r["type"] == "batch"
    ]
    assert ours[-1]["test_acc"] == theirs[-1]["test_acc"]


def test_a_bf16_run_resumes_bit_identical_too(mnist_root, tmp_path):
    reference = tmp_path / "reference"
    proc = cli(*BF16_ARGS, "--run-dir", reference, mnist_root=mnist_root, env=BF16_ENV)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((reference / "env.json").read_text())["precision"] == "bf16"
    run = tmp_path / "run"
    stopped = interrupt_at(mnist_root, run, 27, signal.SIGINT, BF16_ARGS, BF16_ENV)  # mid-epoch 2 of 20 steps
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert 27 <= checkpoint.load(run / "last.pt")["step"] < 40
    resumed = cli("--resume", run, mnist_root=mnist_root, env=BF16_ENV)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "(bf16" in resumed.stdout + resumed.stderr  # the recipe's precision, resolved again the same way
    assert weights_hash(run) == weights_hash(reference)
    assert batch_steps(run) == list(range(1, 41))


def test_resume_refuses_recipe_changes_and_finished_runs(reference, mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--resume", str(reference), "--lr", "0.1"])
    assert result.exit_code == 2 and "--lr (was 0.002) cannot change" in result.output
    result = runner.invoke(app, ["train", "--resume", str(reference)])
    assert result.exit_code == 2 and "already trained 2 of 2 epochs" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["train", "--resume", str(reference), "--config", "x.toml"])
    assert result.exit_code == 2 and "drop --config" in result.output


def test_resume_can_raise_the_epochs(reference, mnist_root, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    monkeypatch.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    result = CliRunner().invoke(
        app, ["train", "--resume", str(run), "--epochs", "3", "--data-dir", str(mnist_root)]
    )
    assert result.exit_code == 0, result.output
    assert checkpoint.load(run / "last.pt")["epoch"] == 3
    assert batch_steps(run) == list(range(1, 3 * 125 + 1))
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2, 3]
    assert sum(r["type"] == "test" for r in records) == 1


def test_diverging_loss_stops_with_advice(mnist_root, tmp_path, monkeypatch):
    import torch.nn.functional as F

    monkeypatch.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    # --lr is capped at 10 (the config refuses more), and SGD at lr 10 on the fixture never reaches a non-finite
    # loss (its ReLUs die first): let the loss overflow from the third step on instead
    real, calls = F.cross_entropy, []

    def overflowing(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs) * (float("inf") if len(calls) > 2 else 1.0)

    monkeypatch.setattr(F, "cross_entropy", overflowing)
    args = [
        "train",
        "--optimizer",
        "sgd",
        "--lr",
        "10",
        "--schedule",
        "none",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--data-dir",
        str(mnist_root),
        "--run-dir",
        str(tmp_path / "run"),
        "--log-every",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "the loss became inf at step 3" in result.output and "lower --lr" in result.output
    assert (tmp_path / "run" / "metrics.jsonl").is_file() and not (tmp_path / "run" / "last.pt").exists()
