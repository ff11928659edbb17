"""The picture commands: each writes a readable PNG from a real checkpoint (views.py)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistcnn.cli import app

runner = CliRunner()


def png_ok(path, min_size=15_000):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > min_size


def test_picture_commands(tanh_run, mnist_root, tmp_path):
    ckpt = str(tanh_run / "last.pt")
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


def test_confusion_matrix_png_and_json(tanh_run, mnist_root, tmp_path):
    out = tmp_path / "confusion.png"
    result = runner.invoke(
        app,
        ["eval", str(tanh_run / "last.pt"), "--data-dir", str(mnist_root), "--json", "--confusion", str(out)],
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    matrix = np.array(m["confusion"])
    assert matrix.shape == (10, 10) and matrix.sum() == 1000
    assert np.trace(matrix) / 1000 == pytest.approx(m["accuracy"])
    assert png_ok(out)
