"""Data-parallel training: 2 CPU processes (gloo) under torchrun match one process with the same global batch."""

import json
import os
import shlex
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from mnistcnn import checkpoint, data
from mnistcnn.cli import app
from mnistcnn.distributed import World
from mnistcnn.engine import ENV_CPU_BF16

# The equality claims are about fp32 and about the data and loss split, so they use SGD: Adam divides each
# gradient by its running RMS, which blows reduction-order roundings of near-zero gradients up (on an AVX-512 CPU
# 3 of 18,432 conv2 weights then differed by 1.5e-5 after 21 steps), and its scale invariance would hide a wrongly
# scaled loss. SGD's update is linear in the gradient: a mis-scaled shard shows, a rounding does not.
ARGS = shlex.split(
    "--epochs 1 --batch-size 51 --train-limit 1030 --lr 0.05 --device cpu --precision fp32 --seed 3 --optimizer sgd"
)


def test_shards_cover_each_global_batch_once():
    batch = torch.arange(51)
    parts = [World(r, r, 2).shard(batch) for r in range(2)]
    assert [len(p) for p in parts] == [26, 25] and torch.equal(torch.cat(parts), batch)
    assert torch.equal(World.single().shard(batch), batch)


def train_cli(args, run_dir, mnist_root, nproc=None, env=None):
    env = {**os.environ, data.ENV_SUMS: str(mnist_root / "SHA256SUMS"), "OMP_NUM_THREADS": "1", **(env or {})}
    launcher = [sys.executable, "-m", "mnistcnn"]
    if nproc:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "mnistcnn",
        ]
    cmd = [*launcher, "train", *args, "--data-dir", str(mnist_root), "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_two_gloo_processes_match_one(mnist_root, tmp_path):
    train_cli(ARGS, tmp_path / "single", mnist_root)
    proc = train_cli(ARGS, tmp_path / "ddp", mnist_root, nproc=2)
    assert "world size 2" in proc.stdout
    single = checkpoint.load(tmp_path / "single" / "last.pt")["model"]
    ddp = checkpoint.load(tmp_path / "ddp" / "last.pt")["model"]
    assert list(ddp) == list(single)  # plain keys, no "module." prefix
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=1e-5)

    # rank 0 alone writes: one run folder, one line per step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["type"] == "batch"]
    assert steps == list(range(1, 22))  # ceil(1030 / 51) = 21 steps, the last one of 10 images
    single_losses = [
        json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()
    ]
    ours = [r["loss"] for r in records if r["type"] == "batch"]
    theirs = [r["loss"] for r in single_losses if r["type"] == "batch"]
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-5)
    test = [r for r in records if r["type"] == "test"][0]
    assert test["n"] == 1000

    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(tmp_path / "ddp" / "last.pt"),
            "--data-dir",
            str(mnist_root),
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accuracy"] == pytest.approx(test["test_acc"])


def test_sigterm_under_torchrun_saves_and_resumes(mnist_root, tmp_path):
    import signal
    import time

    args = shlex.split(
        "--epochs 3 --batch-size 16 --train-limit 2000 --lr 2e-3 --device cpu --precision fp32 --optimizer sgd"
    )
    # the reference: the same two-process run, never stopped. (Against one process the weights agree to ~3e-5
    # only, after 375 SGD steps on an AVX2-only CPU: reduction-order roundings; test_two_gloo_processes_match_one
    # holds that equality on a short run.) A stopped-and-resumed data-parallel run must end where it would have.
    train_cli(args, tmp_path / "single", mnist_root, nproc=2)
    env = {**os.environ, data.ENV_SUMS: str(mnist_root / "SHA256SUMS"), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "ddp"
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "mnistcnn",
    ]
    cmd = [*launcher, "train", *args, "--data-dir", str(mnist_root), "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and '"type":"epoch"' in metrics.read_text():
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode != 0, out + err  # stopped early
    saved = checkpoint.load(run / "last.pt")
    assert 125 <= saved["step"] < 375
    resumed = subprocess.run(
        [*launcher, "train", "--resume", str(run), "--data-dir", str(mnist_root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    single = checkpoint.load(tmp_path / "single" / "last.pt")["model"]
    ddp = checkpoint.load(run / "last.pt")["model"]
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=0, atol=1e-7)
    steps = [
        json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"batch"' in x
    ]
    assert steps == list(range(1, 376))


def test_bf16_under_torchrun_trains_and_eval_agrees(mnist_root, tmp_path):
    """The bf16 CPU path (forced; `auto` picks it on AMX / AVX512-BF16 CPUs) under torchrun: it trains, and the
    test accuracy it records (evaluated in fp32 on two shards) is the one `mnistcnn eval` prints."""
    args = shlex.split("--epochs 1 --batch-size 32 --train-limit 320 --lr 2e-3 --device cpu --precision auto")
    run = tmp_path / "ddp"
    proc = train_cli(args, run, mnist_root, nproc=2, env={ENV_CPU_BF16: "1"})
    assert "world size 2" in proc.stdout and "(bf16" in proc.stdout
    assert json.loads((run / "env.json").read_text())["precision"] == "bf16"
    test = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    result = CliRunner().invoke(
        app, ["eval", str(run / "last.pt"), "--data-dir", str(mnist_root), "--json", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output)
    assert evaluated["accuracy"] == test["test_acc"] and evaluated["per_class"] == test["per_class"]
    assert evaluated["loss"] == pytest.approx(test["test_loss"], rel=1e-5)  # sums in another order


GENERATIVE_ARGS = shlex.split(
    "--epochs 1 --batch-size 51 --train-limit 306 --lr 2e-4 --device cpu --precision fp32 --seed 3 --optimizer sgd"
)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_autoencoders_under_torchrun_match_one_process(mnist_root, tmp_path, kind):
    """Each rank draws the global batch's noise (binarization, z) and keeps its rows: 2 ranks train what 1 does."""
    args = ["--model", kind, *GENERATIVE_ARGS]
    train_cli(args, tmp_path / "single", mnist_root)
    proc = train_cli(args, tmp_path / "ddp", mnist_root, nproc=2)
    assert "world size 2" in proc.stdout
    single = checkpoint.load(tmp_path / "single" / "last.pt")
    ddp = checkpoint.load(tmp_path / "ddp" / "last.pt")
    assert ddp["kind"] == kind and list(ddp["model"]) == list(single["model"])
    from mnistcnn import kinds

    torch.manual_seed(3)
    fresh = kinds.get(kind).build(single["model_args"])  # the same seed's initial weights
    moved = max(float((single["model"][k] - v).abs().max()) for k, v in fresh.state_dict().items())
    assert moved > 1e-3  # the run trained: equality below is not that of two untouched models
    for key in single["model"]:
        torch.testing.assert_close(ddp["model"][key], single["model"][key], rtol=0, atol=1e-5)
    ours, theirs = (
        [
            r
            for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())
            if r["type"] == "test"
        ][0]
        for d in ("ddp", "single")
    )
    assert ours["test_loss"] == pytest.approx(theirs["test_loss"], rel=1e-5)


def test_a_gan_trains_under_torchrun(mnist_root, tmp_path):
    """The GAN wraps its generator and discriminator in DDP apart; rank 0 writes the run and its progress."""
    proc = train_cli(
        ["--model", "gan", *GENERATIVE_ARGS, "--lr", "2e-4", "--optimizer", "adam"],
        tmp_path / "ddp",
        mnist_root,
        nproc=2,
    )
    assert "world size 2" in proc.stdout
    ckpt = checkpoint.load(tmp_path / "ddp" / "last.pt", resume=True)
    assert ckpt["kind"] == "gan" and ckpt["step"] == 6
    assert (tmp_path / "ddp" / "progress" / "epoch-001.png").is_file()
