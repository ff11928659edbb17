"""scripts/gpu_check.py: its dry run exercises every check on the CPU; failures exit 1; the goals add up."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPTS / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def run_check(tmp_path, *args):
    cmd = [sys.executable, str(SCRIPTS / "gpu_check.py"), "--dry-run", "--out", str(tmp_path), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return proc, json.loads((tmp_path / "gpu-check.json").read_text())


def test_dry_run_exercises_every_check(tmp_path):
    proc, result = run_check(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert result["dry_run"] is True and result["failed"] == []
    assert set(result["checks"]) == set(gpu_check.CHECKS)
    assert all(c["rc"] == 0 for check in result["checks"].values() for c in check["commands"])
    assert "1 passed" in result["tests"]
    names = [v["name"] for v in result["recipes"]["recipes"]]
    assert names == ["fast", "fast-gpu"] and result["recipes"]["sweep"]
    assert {"us_per_step", "batch_size"} <= set(result["recipes"]["steps"][0])
    assert 0 < result["peer"]["mean_test_acc"] <= 1
    assert result["lecture"]["loop"]["images_per_s"] > 0 and result["lecture"]["recipe"]["train_s"] > 0
    assert result["walls"][0]["config"] == "fast-gpu"
    assert result["startup"]["device"] == "cpu"
    assert all(goal is not None for goal in result["goals"].values())  # every goal computed from the figures
    assert "DRY RUN" in proc.stdout and (tmp_path / "gpu-check.log").stat().st_size > 0


def test_a_failing_check_exits_1_and_is_named(tmp_path):
    proc, result = run_check(tmp_path, "--only", "tests", "--pytest-args", "tests/no_such_test.py")
    assert proc.returncode == 1
    assert len(result["failed"]) == 1 and result["failed"][0].startswith("tests:")
    assert result["checks"]["tests"]["commands"][0]["rc"] == 4  # pytest: no tests found at that path
    assert "FAILED checks" in proc.stdout


def test_goals_from_figures():
    runs = [{"test_acc": a, "train_s": t} for a, t in ((0.991, 0.18), (0.990, 0.19), (0.989, 0.2))]
    ours = {
        "name": "fast-gpu",
        "runs": runs,
        "mean_test_acc": 0.99,
        "min_test_acc": 0.989,
        "median_train_s": 0.19,
    }
    res = {
        "recipes": {"recipes": [ours], "sweep": []},
        "peer": {"median_train_s": 0.40, "mean_test_acc": 0.9905},
    }
    assert gpu_check.goal_recipe(res)["met"] is True
    res["peer"]["median_train_s"] = 0.37  # < 2x ahead
    assert gpu_check.goal_recipe(res)["met"] is False
    lecture = {
        "lecture": {
            "loop": {"ten_epochs_s": 170.0},
            "recipe": {"train_s": 6.0, "wall_s": 14.0, "test_acc": 0.9727},
        }
    }
    goal = gpu_check.goal_lecture(lecture)
    assert goal["met"] is True and abs(goal["train_speedup"] - 170 / 6) < 1e-9
    lecture["lecture"]["recipe"]["test_acc"] = 0.9620  # 0.64 pt below the lecture's 96.84 %
    assert gpu_check.goal_lecture(lecture)["met"] is False
    assert gpu_check.goal_lecture({"lecture": {"loop": None, "recipe": None}}) is None
