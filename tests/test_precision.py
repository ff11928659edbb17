"""One number per checkpoint: the test figures `train` prints, records in metrics.jsonl and stores in the
checkpoint equal what `mnistcnn eval` (and the page's Model tab) report for it, whatever precision it trained in.

Both CPU paths run on every machine: $MNISTCNN_CPU_BF16 overrides the CPU detection, so `--precision auto` picks
fp32 (as on an AVX2-only CPU) or bf16 (as on an AMX / AVX512-BF16 CPU) here. Device: cpu. The bf16 runs are tiny:
bf16 is emulated, 5-8x slower than fp32, on AVX2-only CPUs."""

import json

import pytest
import torch
from typer.testing import CliRunner

from mnistcnn import checkpoint
from mnistcnn.cli import app
from mnistcnn.engine import ENV_CPU_BF16, resolve_precision
from mnistcnn.errors import MnistcnnError

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("forced", "precision"), [("0", "fp32"), ("1", "bf16")])
def test_train_and_eval_report_the_same_figures(mnist_root, tmp_path, monkeypatch, forced, precision):
    monkeypatch.setenv(ENV_CPU_BF16, forced)
    run = tmp_path / "run"
    printed = invoke(
        *("train", "--data-dir", mnist_root, "--device", "cpu", "--precision", "auto", "--run-dir", run),
        *("--epochs", 1, "--batch-size", 32, "--train-limit", 640, "--val-split", 200),
    )
    assert json.loads((run / "env.json").read_text())["precision"] == precision
    assert f"on cpu ({precision})" in printed
    shown = float(printed.split("test accuracy ")[1].split(" %")[0])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    recorded = records[-1]
    stored = checkpoint.load(run / "last.pt")["metrics"][-1]
    assert recorded["type"] == stored["type"] == "test" and stored == recorded

    evaluated = json.loads(
        invoke("eval", run / "last.pt", "--data-dir", mnist_root, "--device", "cpu", "--json")
    )
    assert evaluated["accuracy"] == recorded["test_acc"] and round(100 * evaluated["accuracy"], 2) == shown
    assert evaluated["per_class"] == recorded["per_class"] and evaluated["n"] == recorded["n"] == 1000
    # bf16 logits move the loss by ~1e-3 relative: this is what tells an fp32 evaluation from a bf16 one
    assert evaluated["loss"] == pytest.approx(recorded["test_loss"], rel=1e-6)
    table = invoke("eval", run / "last.pt", "--data-dir", mnist_root, "--device", "cpu")
    assert f"test accuracy {shown:.2f} %" in table

    from mnistcnn.serve.models import Models  # the page's Model tab: the same figure, from the same pass

    tab = Models("cpu", mnist_root).get("run", run / "last.pt").evaluation()
    assert tab["accuracy"] == recorded["test_acc"] and tab["loss"] == pytest.approx(
        recorded["test_loss"], rel=1e-6
    )
    assert tab["misclassified"] == round(1000 * (1 - recorded["test_acc"]))

    # validation is evaluated in fp32 too: the epoch record's val_acc is the checkpoint's, as eval would see it
    epoch = next(r for r in records if r["type"] == "epoch")
    assert 0 <= epoch["val_acc"] <= 1


def test_the_cpu_detection_can_be_forced_either_way(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("mnistcnn.engine.cpu_flags", lambda: {"avx2", "amx_bf16"})
    monkeypatch.setenv(ENV_CPU_BF16, "0")
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr("mnistcnn.engine.cpu_flags", lambda: {"avx2"})
    monkeypatch.setenv(ENV_CPU_BF16, "1")
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"  # an explicit precision is never overridden
    monkeypatch.setenv(ENV_CPU_BF16, "yes")
    with pytest.raises(MnistcnnError, match=r"MNISTCNN_CPU_BF16 must be 1 or 0"):
        resolve_precision("auto", cpu)
