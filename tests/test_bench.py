"""scripts/bench.py end to end on the fixture MNIST, with tiny sizes: it runs, and its JSON adds up."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def test_bench_runs_and_reports_ratios(mnist_root, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(BENCH),
        "--data-dir",
        str(mnist_root),
        "--device",
        "cpu",
        "--batch-size",
        "16",
        "--images",
        "96",
        "--throughput-repeats",
        "1",
        "--lecture-epoch-images",
        "40",
        "--repeats",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # env carries the fixture digests
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["torch"]
    assert len(r["lecture_loop"]["all_images_per_s"]) == len(r["engine"]["all_images_per_s"]) == 1
    assert r["lecture_loop"]["mnistcnn_malloc"] is False and r["engine"]["mnistcnn_malloc"] is True
    assert r["engine_default_malloc"]["mnistcnn_malloc"] is False
    assert r["engine_vs_lecture"] == r["engine"]["images_per_s"] / r["lecture_loop"]["images_per_s"]
    assert r["lecture_loop_b10"]["batch_size"] == 10
    assert abs(r["lecture_loop_b10"]["epoch_s"] * r["lecture_loop_b10"]["images_per_s"] - 60_000) < 1e-6
    fast = r["fast"]
    assert len(fast["runs"]) == 1 and 0 < fast["runs"][0]["test_acc"] <= 1
    assert fast["wall_vs_lecture_epoch"] == fast["median_wall_s"] / r["lecture_loop_b10"]["epoch_s"]
    assert "fast recipe: median wall" in proc.stdout
