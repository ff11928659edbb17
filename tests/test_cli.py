import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mnistcnn import data
from mnistcnn.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_python_m_help_is_quick_and_imports_no_torch():
    code = (
        "import sys, runpy; sys.argv=['mnistcnn','--help']\ntry: runpy.run_module('mnistcnn', run_name='__main__')\n"
        "except SystemExit: pass\nprint('TORCH', 'torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "train" in out.stdout and "TORCH False False" in out.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "mnistcnn", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "plot-loss" in proc.stdout


@pytest.fixture(scope="module")
def trained_run(mnist_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run1"
    mp = pytest.MonkeyPatch()
    mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    result = invoke(
        "train",
        "--data-dir",
        mnist_root,
        "--epochs",
        1,
        "--batch-size",
        32,
        "--device",
        "cpu",
        "--run-dir",
        run,
    )
    mp.undo()
    assert result.exit_code == 0, result.output
    return run, result.output


def test_train_then_eval_agree(trained_run, mnist_root):
    run, output = trained_run
    assert "test accuracy" in output and str(run) in output
    reported = float(output.split("test accuracy ")[1].split(" %")[0])
    result = invoke("eval", run / "last.pt", "--data-dir", mnist_root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"test accuracy {reported:.2f} %" in result.output
    assert "per-class accuracy" in result.output
    result = invoke("eval", run / "last.pt", "--data-dir", mnist_root, "--json", "--device", "cpu")
    metrics = json.loads(result.output)
    assert set(metrics) == {"accuracy", "loss", "per_class", "n"} and metrics["n"] == 1000
    assert round(100 * metrics["accuracy"], 2) == reported and len(metrics["per_class"]) == 10


def test_plot_loss(trained_run, tmp_path):
    run, _ = trained_run
    out = tmp_path / "plot.png"
    result = invoke("plot-loss", run, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    result = invoke("plot-loss", run / "metrics.jsonl", "--out", tmp_path / "b.png")
    assert result.exit_code == 0 and (tmp_path / "b.png").is_file()


def test_plot_loss_defaults_to_the_newest_run(trained_run, tmp_path, monkeypatch):
    import shutil

    run, _ = trained_run
    shutil.copytree(run, tmp_path / "runs" / "a")
    monkeypatch.chdir(tmp_path)
    result = invoke("plot-loss")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "a" / "loss.png").is_file()


def test_data_verify_and_download(mnist_root):
    result = invoke("data", "verify", "--data-dir", mnist_root)
    assert result.exit_code == 0 and "4 files match" in result.output
    result = invoke("data", "download", "--data-dir", mnist_root)
    assert result.exit_code == 0 and "source: local" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "0"], "epochs must be > 0"),
        (["train", "--batch-size", "-3"], "batch_size must be > 0"),
        (["train", "--lr", "0"], "lr must be > 0"),
        (["train", "--train-limit", "0"], "train_limit must be > 0"),
        (["train", "--val-split", "-1"], "val_split must be >= 0"),
        (["train", "--precision", "fp8"], "precision must be one of"),
        (["train", "--optimizer", "rmsprop"], "optimizer must be one of"),
        (["train", "--device", "tpu"], "unknown device"),
        (["train", "--config", "missing.toml"], "does not exist"),
        (["eval", "nothing.pt"], "does not exist"),
        (["plot-loss", "nowhere"], "does not exist"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_an_absent_cuda_device_is_named(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    ask = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: absent on every machine
    expected = "does not exist" if torch.cuda.is_available() else "no CUDA GPU is visible"
    result = invoke("train", "--device", ask)
    assert result.exit_code == 2 and result.output.startswith("error: ") and expected in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--batch-size", "abc"], "Invalid value for '--batch-size'"),
        (["eval"], "Missing argument"),
        (["evl"], "No such command 'evl'"),
        (["train", "--no-such-flag"], "No such option"),
    ],
)
def test_usage_mistakes_are_one_line_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_missing_data_without_network(tmp_path, no_network):
    result = invoke(
        "train", "--data-dir", tmp_path / "nodata", "--device", "cpu", "--run-dir", tmp_path / "r"
    )
    assert result.exit_code == 2
    assert "could not be downloaded" in result.output and "train-images-idx3-ubyte" in result.output
    result = invoke("data", "verify", "--data-dir", tmp_path / "nodata")
    assert result.exit_code == 2 and "is missing" in result.output


def test_existing_run_dir_is_not_overwritten(trained_run, mnist_root, tmp_path):
    run, _ = trained_run
    before = (run / "metrics.jsonl").read_bytes()
    result = invoke("train", "--data-dir", mnist_root, "--device", "cpu", "--run-dir", run)
    assert result.exit_code == 2 and "already holds a previous run" in result.output
    assert (run / "metrics.jsonl").read_bytes() == before
    other = tmp_path / "stuff"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = invoke("train", "--data-dir", mnist_root, "--device", "cpu", "--run-dir", other)
    assert result.exit_code == 2 and "other files" in result.output


def test_eval_of_a_non_checkpoint(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text("hello")
    result = invoke("eval", bad)
    assert result.exit_code == 2 and "not a readable checkpoint" in result.output


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("--debug", "eval", tmp_path / "x.pt")
    assert result.exit_code != 0 and result.exception is not None


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("mnistcnn ")


def test_read_only_run_folder_is_a_clear_error(mnist_root, tmp_path, monkeypatch):
    from pathlib import Path

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", denied)  # what a read-only folder does (root ignores chmod)
    result = invoke(
        "train", "--data-dir", mnist_root, "--device", "cpu", "--run-dir", tmp_path / "ro" / "run"
    )
    assert result.exit_code == 2, result.output
    assert "cannot create run folder" in result.output and "Permission denied" in result.output


def test_val_split_too_large_and_plot_without_metrics(mnist_root, tmp_path):
    result = invoke(
        "train", "--data-dir", mnist_root, "--device", "cpu", "--val-split", 2000, "--run-dir", tmp_path / "r"
    )
    assert result.exit_code == 2 and "leaves no training images" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke("plot-loss", tmp_path / "empty")
    assert result.exit_code == 2 and "metrics.jsonl does not exist" in result.output
