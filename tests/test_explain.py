"""explain.py: the layer summary, the model a checkpoint rebuilds, and its exports matching it."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mnistcnn import checkpoint
from mnistcnn.cli import app
from mnistcnn.explain import summary

runner = CliRunner()


def test_summary_counts_the_lecture_numbers():
    rows, total, classic = summary()
    assert total == 41_866 and classic["parameters"] == 19_694_080 and classic["conv1_parameters"] == 320
    assert [r[1] for r in rows][1:6] == [(32, 28, 28), (32, 14, 14), (64, 12, 12), (64, 6, 6), (2304,)]
    result = runner.invoke(app, ["summary"])
    assert result.exit_code == 0 and "41,866" in result.output and "19,694,080" in result.output


def test_activation_is_honoured_by_loading(tanh_run):
    model = checkpoint.model_from_checkpoint(checkpoint.load(tanh_run / "last.pt"))
    assert model.activation == "tanh"


def test_torchscript_export_matches(tanh_run, tmp_path):
    out = tmp_path / "m.pt"
    result = runner.invoke(
        app, ["export", str(tanh_run / "last.pt"), "--format", "torchscript", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    model = checkpoint.model_from_checkpoint(checkpoint.load(tanh_run / "last.pt"))
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(torch.jit.load(str(out))(x), model(x), rtol=0, atol=1e-5)


def test_onnx_export_matches_onnxruntime(tanh_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(tanh_run / "last.pt"), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = checkpoint.model_from_checkpoint(checkpoint.load(tanh_run / "last.pt"))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # the batch dimension is dynamic
        x = torch.randn(batch, 1, 28, 28)
        (ours,) = session.run(None, {"images": x.numpy()})
        assert np.abs(ours - model(x).detach().numpy()).max() <= 1e-4


def test_export_bad_format(tanh_run, tmp_path):
    result = runner.invoke(
        app, ["export", str(tanh_run / "last.pt"), "--format", "tflite", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "onnx or torchscript" in result.output
