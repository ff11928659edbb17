"""plots.py: the loss plot from a metrics.jsonl, its moving average, and what it does with bad lines."""

import json

import pytest

from mnistcnn.errors import MnistcnnError
from mnistcnn.plots import _moving_average, plot_loss


def write_metrics(path, extra_lines=()):
    records = [
        {"type": "batch", "epoch": 1 + s // 50, "step": s + 1, "loss": 2.3 / (1 + s)} for s in range(100)
    ]
    records += [
        {
            "type": "epoch",
            "epoch": e,
            "train_loss": 0.5 / e,
            "train_acc": 0.8 + e / 100,
            "lr": 1e-3,
            "seconds": 1.0,
            "images_per_s": 100.0,
        }
        for e in (1, 2)
    ]
    records.append(
        {
            "type": "test",
            "epoch": 2,
            "test_loss": 0.1,
            "test_acc": 0.97,
            "per_class": [0.97] * 10,
            "n": 1000,
            "train_seconds": 2.0,
        }
    )
    lines = [json.dumps(r).encode() for r in records] + list(extra_lines)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_moving_average_is_the_mean_of_the_last_window():
    assert _moving_average([1, 2, 3, 4, 5], 2) == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert _moving_average([4.0], 10) == [4.0]


def test_plot_writes_a_png_and_counts_bad_lines(tmp_path):
    metrics = write_metrics(
        tmp_path / "metrics.jsonl", [b"\xff\xfe not utf-8", b'{"type": "batch"}', b"[1, 2]"]
    )
    said = []
    out = plot_loss(metrics, tmp_path / "loss.png", log=said.append)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    assert said and "skipped 3 lines" in said[0]


def test_nothing_to_plot_is_one_clear_error(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_bytes(b'{"type": "epoch"}\nnot json\n')
    with pytest.raises(MnistcnnError, match="nothing to plot"):
        plot_loss(metrics, tmp_path / "loss.png")
    assert not (tmp_path / "loss.png").exists()
