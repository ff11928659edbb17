"""The explain commands: each writes a readable PNG from a real checkpoint; summary and export numbers."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mnistcnn import checkpoint
from mnistcnn.cli import app
from mnistcnn.explain import summary

runner = CliRunner()


@pytest.fixture(scope="module")
def run(train_run, tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("views") / "run", epochs=1, activation="tanh")


def png_ok(path, min_size=15_000):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > min_size


def test_summary_counts_the_lecture_numbers():
    rows, total, classic = summary()
    assert total == 41_866 and classic["parameters"] == 19_694_080 and classic["conv1_parameters"] == 320
    assert [r[1] for r in rows][1:6] == [(32, 28, 28), (32, 14, 14), (64, 12, 12), (64, 6, 6), (2304,)]
    result = runner.invoke(app, ["summary"])
    assert result.exit_code == 0 and "41,866" in result.output and "19,694,080" in result.output


def test_picture_commands(run, mnist_root, tmp_path):
    ckpt = str(run / "last.pt")
    d = ["--data-dir", str(mnist_root)]
    commands = {
        "filters.png": ["show", "filters", ckpt],
        "features.png": ["show", "features", ckpt, "--index", "3", *d],
        "kernels.png": ["show", "kernels", "--index", "3", *d],
        "activations.png": ["show", "activations"],
        "failures.png": ["failures", ckpt, "--n", "12", *d, "--device", "cpu"],
    }
    for name, args in commands.items():
        result = runner.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, (name, result.output)
        assert png_ok(tmp_path / name), name
    result = runner.invoke(app, ["show", "kernels", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "either an IMAGE or --index" in result.output
    result = runner.invoke(
        app, ["show", "features", ckpt, "--index", "5000", *d, "--out", str(tmp_path / "x.png")]
    )
    assert result.exit_code == 2 and "--index must be between 0 and 999" in result.output


def test_confusion_matrix_png_and_json(run, mnist_root, tmp_path):
    out = tmp_path / "confusion.png"
    result = runner.invoke(
        app, ["eval", str(run / "last.pt"), "--data-dir", str(mnist_root), "--json", "--confusion", str(out)]
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    matrix = np.array(m["confusion"])
    assert matrix.shape == (10, 10) and matrix.sum() == 1000
    assert np.trace(matrix) / 1000 == pytest.approx(m["accuracy"])
    assert png_ok(out)


def test_activation_is_honoured_by_loading(run):
    model = checkpoint.model_from_checkpoint(checkpoint.load(run / "last.pt"))
    assert model.activation == "tanh"


def test_torchscript_export_matches(run, tmp_path):
    out = tmp_path / "m.pt"
    result = runner.invoke(
        app, ["export", str(run / "last.pt"), "--format", "torchscript", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    model = checkpoint.model_from_checkpoint(checkpoint.load(run / "last.pt"))
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(torch.jit.load(str(out))(x), model(x), rtol=0, atol=1e-5)


def test_onnx_export_matches_onnxruntime(run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(run / "last.pt"), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = checkpoint.model_from_checkpoint(checkpoint.load(run / "last.pt"))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # the batch dimension is dynamic
        x = torch.randn(batch, 1, 28, 28)
        (ours,) = session.run(None, {"images": x.numpy()})
        assert np.abs(ours - model(x).detach().numpy()).max() <= 1e-4


def test_export_bad_format(run, tmp_path):
    result = runner.invoke(
        app, ["export", str(run / "last.pt"), "--format", "tflite", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "onnx or torchscript" in result.output
