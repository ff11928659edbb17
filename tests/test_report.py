"""report.py: the plain progress log (what CI logs and redirected output show)."""

import io

from mnistcnn.report import PlainReporter, format_epoch


def test_epoch_line_holds_the_numbers():
    record = {"epoch": 2, "train_loss": 0.12345, "train_acc": 0.9612, "seconds": 12.3, "images_per_s": 4878.0}
    assert format_epoch(record) == "epoch 2: train loss 0.1235, train acc 96.12 %, 12.3 s (4,878 img/s)"
    record.update(val_loss=0.05, val_acc=0.985)
    assert "val loss 0.0500, val acc 98.50 %" in format_epoch(record)


def test_plain_reporter_writes_lines_not_bars():
    out = io.StringIO()
    reporter = PlainReporter(stream=out)
    reporter.log("training on cpu")
    reporter.start_epoch(1, 1, 10)
    reporter.advance(5, 0.5, 100.0)  # within 10 s of the start: no progress line yet
    reporter.end_epoch(
        {"epoch": 1, "train_loss": 0.5, "train_acc": 0.9, "seconds": 1.0, "images_per_s": 10.0}
    )
    lines = out.getvalue().splitlines()
    assert lines == ["training on cpu", "epoch 1: train loss 0.5000, train acc 90.00 %, 1.0 s (10 img/s)"]
