"""The run folder and every output file: output paths checked before any work, one owner at a time (flock), a
run id that resume checks, metrics.jsonl readers that skip bad lines, and signals in the final phase.

Usage: `python -m pytest tests/test_rundir.py -q`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnistcnn import checkpoint, data, outputs
from mnistcnn.cli import app
from mnistcnn.rundir import LOCK, read_metrics

TINY = ["--train-limit", "64", "--batch-size", "64", "--device", "cpu", "--log-every", "1000"]
PNG = b"\x89PNG\r\n\x1a\n an older picture"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error(result, *words: str) -> str:
    """Exit 2 with exactly one `error:` line holding every word; the line."""
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock's (it holds the pid of the latest owner, not user data)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != LOCK)
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def train_tiny(mnist_root: Path, run: Path, *extra) -> None:
    result = invoke("train", *TINY, "--epochs", "1", "--data-dir", mnist_root, "--run-dir", run, *extra)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def runs(mnist_root, tmp_path_factory) -> Path:
    """Two finished 1-epoch runs of different recipes, a and b, made once; tests copy them."""
    base = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse digest fixture is not active yet
        mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
        train_tiny(mnist_root, base / "a")
        train_tiny(mnist_root, base / "b", "--seed", "1")
    return base


@pytest.fixture
def run(runs, tmp_path) -> Path:
    shutil.copytree(runs / "a", tmp_path / "run")
    return tmp_path / "run"


# --- output paths ---


@pytest.mark.parametrize(
    "args, words",
    [
        (["export", "RUN/last.pt", "--format", "torchscript", "--out", "RUN/last.pt"], ["is an input"]),
        (
            ["export", "RUN/last.pt", "--format", "torchscript", "--out", "RUN/best.pt"],
            ["file of the run folder"],
        ),
        (["export", "RUN", "--format", "torchscript", "--out", "RUN/last.pt"], ["is an input"]),
        (["export", "RUN/last.pt", "--out", "RUN/metrics.jsonl"], ["file of the run folder"]),
        (["export", "RUN/last.pt", "--out", "RUN/config.json", "--force"], ["file of the run folder"]),
        (["plot-loss", "RUN", "--out", "RUN/metrics.jsonl"], ["is an input"]),
        (["plot-loss", "RUN", "--out", "RUN/env.json", "--force"], ["file of the run folder"]),
        (["eval", "RUN/last.pt", "--confusion", "RUN/best.pt"], ["file of the run folder"]),
        (["eval", "RUN/last.pt", "--confusion", "RUN/last.pt", "--force"], ["is an input"]),
        (["show", "filters", "RUN/last.pt", "--out", "RUN/config.json"], ["file of the run folder"]),
        (["show", "features", "RUN/last.pt", "--index", "0", "--out", "RUN/last.pt"], ["is an input"]),
        (["failures", "RUN/best.pt", "--out", "RUN/best.pt"], ["is an input"]),
        (["predict", "RUN/last.pt", "RUN/loss.png", "--show-input", "RUN/loss.png"], ["is an input"]),
        (["show", "kernels", "RUN/loss.png", "--out", "RUN/loss.png"], ["is an input"]),
        (["show", "activations", "--out", "RUN/.mnistcnn.lock"], ["file of the run folder"]),
    ],
    ids=lambda v: "-".join(v).replace("/", "_") if isinstance(v, list) else None,
)
def test_an_output_is_never_an_input_or_a_run_file(args, words, run):
    before = snapshot(run)
    result = invoke(*[a.replace("RUN", str(run)) for a in args])
    one_error(result, *words)
    assert snapshot(run) == before


def test_output_problems_are_found_before_any_work(tmp_path):
    """The checkpoint does not even exist: the output is checked first."""
    missing = tmp_path / "missing.pt"
    (tmp_path / "folder").mkdir()
    one_error(invoke("eval", missing, "--confusion", tmp_path / "folder"), "is a folder")
    one_error(invoke("show", "filters", missing, "--out", tmp_path / "no" / "x.png"), "does not exist")
    one_error(invoke("failures", missing, "--out", tmp_path / "x.gif"), "unknown extension '.gif'")
    one_error(invoke("export", missing, "--out", tmp_path / "x.png"), "unknown extension '.png'", ".onnx")
    (tmp_path / "file").write_text("x")
    one_error(invoke("show", "activations", "--out", tmp_path / "file" / "x.png"), "is not a folder")
    one_error(invoke("export", missing, "--format", "tflite"), "onnx or torchscript")


def test_unwritable_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(
        os, "access", lambda path, mode: False
    )  # root ignores chmod; this is what EACCES looks like
    one_error(invoke("show", "activations", "--out", tmp_path / "a.png"), "is not writable")
    assert not (tmp_path / "a.png").exists()


def test_existing_file_replaced_only_when_same_kind_or_forced(tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("my notes, not a picture")
    one_error(invoke("show", "activations", "--out", notes), "is not a picture", "--force")
    assert notes.read_text() == "my notes, not a picture"
    result = invoke("show", "activations", "--out", notes, "--force")
    assert result.exit_code == 0, result.output
    assert notes.read_bytes().startswith(b"\x89PNG")
    old = tmp_path / "old.png"
    old.write_bytes(PNG)
    assert invoke("show", "activations", "--out", old).exit_code == 0
    assert old.read_bytes().startswith(b"\x89PNG") and old.read_bytes() != PNG
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_name_without_extension_gets_one(tmp_path, monkeypatch):
    result = invoke("show", "activations", "--out", tmp_path / "acts")
    assert result.exit_code == 0 and f"wrote {tmp_path / 'acts.png'}" in result.output
    assert (tmp_path / "acts.png").read_bytes().startswith(b"\x89PNG") and not (tmp_path / "acts").exists()
    svg = tmp_path / "acts.svg"
    assert invoke("show", "activations", "--out", svg).exit_code == 0
    assert b"<svg" in svg.read_bytes()[:400]


def test_export_replaces_its_own_kind_only(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("export", run / "last.pt", "--format", "torchscript")
    assert result.exit_code == 0 and "wrote mynet.pt" in result.output, result.output
    first = (tmp_path / "mynet.pt").stat().st_mtime_ns
    assert invoke("export", run / "last.pt", "--format", "torchscript").exit_code == 0  # an export: replaced
    assert (tmp_path / "mynet.pt").stat().st_mtime_ns >= first
    shutil.copy(run / "best.pt", tmp_path / "saved.pt")  # a checkpoint outside a run folder
    before = (tmp_path / "saved.pt").read_bytes()
    one_error(invoke("export", run / "last.pt", "--format", "torchscript", "--out", "saved.pt"), "--force")
    assert (tmp_path / "saved.pt").read_bytes() == before
    result = invoke("export", run / "last.pt", "--format", "torchscript", "--out", "saved.pt", "--force")
    assert result.exit_code == 0 and torch.jit.load("saved.pt") is not None


def test_kinds_recognise_their_files(tmp_path):
    png, ckpt = tmp_path / "a.png", tmp_path / "c.pt"
    png.write_bytes(PNG)
    torch.save({"model": {}}, ckpt)
    assert outputs.PICTURE.holds(png) and not outputs.PICTURE.holds(ckpt)
    assert not outputs.TORCHSCRIPT.holds(ckpt) and not outputs.TORCHSCRIPT.holds(png)
    assert not outputs.PICTURE.holds(tmp_path / "missing.png")


# --- the lock ---


def test_a_locked_run_folder_is_refused(run, mnist_root):
    before = snapshot(run)
    with open(run / LOCK, "r+") as held:  # another open file description: flock conflicts as across processes
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)
        held.write("4242\n")
        held.flush()
        result = invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run)
        one_error(result, f"{run} is in use by another mnistcnn train (pid 4242)")
    assert snapshot(run) == before and (run / LOCK).read_text() == "4242\n"


def test_the_lock_is_released_when_the_holder_dies(run, mnist_root):
    """A process holding the lock is killed (SIGKILL): the kernel drops the flock, resume goes ahead."""
    hold = "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f,fcntl.LOCK_EX); print('held',flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", hold, str(run / LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        one_error(invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run), "is in use")
    finally:
        proc.kill()
        proc.wait()
    result = invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run)
    assert result.exit_code == 0, result.output
    with open(run / LOCK) as f:  # and the finished train released it too
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_new_run_in_a_locked_empty_folder_is_refused(mnist_root, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    with open(folder / LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        one_error(invoke("train", *TINY, "--data-dir", mnist_root, "--run-dir", folder), "is in use")
    assert [p.name for p in folder.iterdir()] == [LOCK]


# --- identity ---


def test_run_id_in_config_and_every_checkpoint(run):
    run_id = json.loads((run / "config.json").read_text())["run_id"]
    assert len(run_id) == 32
    assert checkpoint.load(run / "last.pt")["run_id"] == run_id == checkpoint.load(run / "best.pt")["run_id"]


def test_resume_refuses_a_checkpoint_of_another_run(run, runs, mnist_root):
    shutil.copy(runs / "b" / "last.pt", run / "v1.pt")
    before = snapshot(run)
    result = invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run / "v1.pt")
    one_error(result, "belongs to another run than", str(run))
    assert snapshot(run) == before


def test_resume_refuses_a_folder_whose_last_pt_points_at_another_run(run, runs, mnist_root):
    (run / "last.pt").unlink()
    (run / "last.pt").symlink_to(runs / "b" / "last.pt")
    before = snapshot(run)
    one_error(invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run), "another run")
    assert snapshot(run) == before and snapshot(runs / "b")["last.pt"] == before["last.pt"]


def _strip_run_id(path: Path) -> None:
    ckpt = torch.load(path, weights_only=True)
    del ckpt["run_id"]
    torch.save(ckpt, path)


def test_old_checkpoints_without_run_id(run, runs, mnist_root, tmp_path):
    """No run id: accepted when the folder's config matches the checkpoint's recipe or is absent."""
    _strip_run_id(run / "last.pt")
    config = json.loads((run / "config.json").read_text())
    del config["run_id"]
    (run / "config.json").write_text(json.dumps(config))
    result = invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run)
    assert result.exit_code == 0, result.output
    assert (
        json.loads((run / "config.json").read_text())["run_id"] == checkpoint.load(run / "last.pt")["run_id"]
    )
    other = tmp_path / "other"
    shutil.copytree(runs / "b", other)
    shutil.copy(runs / "a" / "last.pt", other / "old.pt")
    _strip_run_id(other / "old.pt")
    one_error(
        invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", other / "old.pt"),
        "another run",
    )
    fork = tmp_path / "fork"
    fork.mkdir()
    shutil.copy(other / "old.pt", fork / "last.pt")
    result = invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", fork)
    assert result.exit_code == 0, result.output
    assert json.loads((fork / "config.json").read_text())["seed"] == 0


def test_a_failing_resume_changes_nothing(run, mnist_root):
    """Weights of the wrong shape are found before the first write: metrics, config and env stay as they were."""
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["model"]["fc1.weight"] = torch.zeros(10, 7)
    torch.save(ckpt, run / "last.pt")
    before = snapshot(run)
    result = invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run)
    assert result.exit_code != 0
    assert snapshot(run) == before


# --- metrics.jsonl readers ---


def test_plot_loss_skips_bad_lines_and_says_how_many(run, tmp_path):
    lines = (run / "metrics.jsonl").read_bytes()
    bad = [
        b"\xff\xfe not utf-8\n",
        b'{"type": "batch", "epoch": 1, "step": 9}\n',  # no loss
        b'{"type": "batch", "epoch": 1, "step": true, "loss": 0.5}\n',  # a bool is not a step
        b'{"type": "batch", "epoch": 1, "step": 3, "loss": "low"}\n',
        b'{"type": "epoch", "epoch": "one", "train_acc": 0.5, "seconds": 1}\n',
        b"[1, 2, 3]\n",
    ]
    (run / "metrics.jsonl").write_bytes(bad[0] + lines + b"".join(bad[1:]) + b'{"type": "ba')
    result = invoke("plot-loss", run, "--out", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert "skipped 6 lines" in result.output and (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    records, skipped = read_metrics(run / "metrics.jsonl", skip_bad=True)
    assert skipped == 6 and {r["type"] for r in records} == {"batch", "epoch", "test"}


def test_plot_loss_with_nothing_left_to_plot(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(b'\xff\n{"type": "batch", "loss": 1}\n')
    one_error(invoke("plot-loss", tmp_path, "--out", tmp_path / "p.png"), "nothing to plot", "2 bad lines")
    assert not (tmp_path / "p.png").exists()


def test_resume_drops_bad_metric_lines(run, mnist_root):
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b"\xff garbage\n")
    result = invoke("train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run)
    assert result.exit_code == 0, result.output
    records, skipped = read_metrics(run / "metrics.jsonl")
    assert skipped == 0 and [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]


# --- signals during the final phase ---


def _signal_during(monkeypatch, where: str, sig: int) -> None:
    """Deliver `sig` to this process from inside the final evaluation, the last save or the plot."""
    from mnistcnn import plots
    from mnistcnn.train import Trainer

    def kill():
        os.kill(os.getpid(), sig)

    if where == "evaluation":
        real = Trainer._evaluate

        def evaluate(self, split):
            if split is self.test:
                kill()
            return real(self, split)

        monkeypatch.setattr(Trainer, "_evaluate", evaluate)
    elif where == "save":
        real_save, calls = checkpoint.save, []

        def save(path, state):
            calls.append(path)
            if len(calls) == 3:  # last.pt, best.pt after the epoch; the final last.pt
                kill()
            return real_save(path, state)

        monkeypatch.setattr(checkpoint, "save", save)
    else:
        real_plot = plots.plot_loss

        def plot(metrics, out, log=lambda _: None):
            kill()
            return real_plot(metrics, out, log)

        monkeypatch.setattr(plots, "plot_loss", plot)


@pytest.mark.parametrize(
    "where, sig", [("evaluation", signal.SIGTERM), ("save", signal.SIGINT), ("plot", signal.SIGTERM)]
)
def test_a_signal_in_the_final_phase_is_never_exit_0(where, sig, mnist_root, tmp_path, monkeypatch):
    _signal_during(monkeypatch, where, sig)
    run = tmp_path / "run"
    result = invoke("train", *TINY, "--epochs", "1", "--data-dir", mnist_root, "--run-dir", run)
    assert result.exit_code == 128 + sig, result.output
    assert "interrupted after the last epoch" in result.output and "mnistcnn eval" in result.output
    ckpt = checkpoint.load(run / "last.pt")
    assert ckpt["epoch"] == 1
    tests = [r for r in read_metrics(run / "metrics.jsonl")[0] if r["type"] == "test"]
    assert len(tests) == (0 if where == "evaluation" else 1)
    assert (run / "loss.png").exists() == (where == "plot")  # the plot in progress completes, whole
    if where == "plot":
        assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_sigterm_during_the_plot_in_a_real_process(mnist_root, tmp_path):
    """The same through `python -m mnistcnn`-like start-up: the exit status the shell sees is 143."""
    run = tmp_path / "run"
    code = (
        "import os, signal, sys\n"
        "from mnistcnn import plots\n"
        "real = plots.plot_loss\n"
        "def plot(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "plots.plot_loss = plot\n"
        "from mnistcnn.cli import app\n"
        "sys.argv = ['mnistcnn', *sys.argv[1:]]\n"
        "app()\n"
    )
    args = ["train", *TINY, "--epochs", "1", "--data-dir", str(mnist_root), "--run-dir", str(run)]
    env = {**os.environ, data.ENV_SUMS: str(mnist_root / "SHA256SUMS"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 143, proc.stderr
    assert "interrupted after the last epoch" in proc.stderr
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
    checkpoint.load(run / "last.pt")
