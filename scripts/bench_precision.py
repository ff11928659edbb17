"""fp32 against bf16 on this CPU, recipe by recipe: whole-command wall, training images/s, test accuracy.

Usage: python scripts/bench_precision.py --data-dir ../shared/data --out docs/bench-precision-cpu.json

For each recipe (default, fast, lecture) and each seed, `mnistcnn train --precision fp32` and `--precision bf16`
run one after the other in fresh processes (so drifting machine load hits both alike); the table gives medians
and the bf16/fp32 ratios. This is the measurement behind `--precision auto`'s choice on a CPU: bf16 only where
it is faster AND reaches the recipe's accuracy. `--lecture-epochs 1` shortens the lecture recipe (10 epochs of
batch 10) to one epoch: its images/s are the same, its accuracy is not the recipe's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mnistcnn.engine import cpu_has_fast_bf16, cpu_name, simd_flags  # noqa: E402

RECIPES = {"default": None, "fast": "fast", "lecture": "lecture"}


def recipe_args(recipe: str) -> list[str]:
    name = RECIPES[recipe]
    if name is None:
        return []
    return ["--config", name]  # a shipped recipe, by name


def train_once(args, recipe: str, precision: str, seed: int, extra: list[str]) -> dict:
    """One `mnistcnn train` in a subprocess: wall time, training seconds and images/s, test accuracy."""
    with tempfile.TemporaryDirectory(prefix="mnistcnn-prec-") as tmp:
        cmd = [
            *(sys.executable, "-m", "mnistcnn", "train", *recipe_args(recipe), *extra),
            *("--precision", precision, "--seed", str(seed), "--device", "cpu"),
            *("--data-dir", str(args.data_dir), "--run-dir", f"{tmp}/run"),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        records = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
        env_json = json.loads(Path(f"{tmp}/run/env.json").read_text())
    test = next(r for r in records if r["type"] == "test")
    epochs = [r for r in records if r["type"] == "epoch"]
    assert env_json["precision"] == precision, env_json
    return {
        "seed": seed,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # less sensitive than wall time to other load on a shared machine
        "train_s": round(test["train_seconds"], 2),
        "images_per_s": round(statistics.median(r["images_per_s"] for r in epochs)),
        "test_acc": test["test_acc"],
        "load_avg": os.getloadavg()[0],
    }


def summarise(runs: list[dict]) -> dict:
    return {
        "runs": runs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "median_images_per_s": statistics.median(r["images_per_s"] for r in runs),
        "test_acc": [r["test_acc"] for r in runs],
        "mean_test_acc": statistics.fmean(r["test_acc"] for r in runs),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNISTCNN_DATA_DIR", "data")))
    p.add_argument(
        "--recipes", default="default,fast,lecture", help="comma-separated: default, fast, lecture"
    )
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds, each trained in both precisions")
    p.add_argument("--lecture-epochs", type=int, help="train the lecture recipe for this many epochs only")
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args()
    recipes = [r.strip() for r in args.recipes.split(",")]
    unknown = set(recipes) - set(RECIPES)
    if unknown:
        p.error(f"unknown recipe(s) {sorted(unknown)}; choose from {sorted(RECIPES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    import torch

    result = {
        "cpu": cpu_name(),
        "cpu_flags": simd_flags(),
        "fast_bf16_detected": cpu_has_fast_bf16(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "recipes": {},
    }
    print(
        f"{result['cpu']} ({result['cores']} cores), torch {result['torch']}; flags {' '.join(simd_flags())}"
    )
    for recipe in recipes:
        extra = ["--epochs", str(args.lecture_epochs)] if recipe == "lecture" and args.lecture_epochs else []
        runs: dict[str, list] = {"fp32": [], "bf16": []}
        for seed in seeds:
            for precision in runs:
                runs[precision].append(train_once(args, recipe, precision, seed, extra))
                r = runs[precision][-1]
                print(
                    f"  {recipe} {precision} seed {seed}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                    f"{r['images_per_s']:,} img/s, "
                    f"{100 * r['test_acc']:.2f} % (load {r['load_avg']:.1f})",
                    flush=True,
                )
        fp32, bf16 = summarise(runs["fp32"]), summarise(runs["bf16"])
        result["recipes"][recipe] = {
            "extra_args": extra,
            "fp32": fp32,
            "bf16": bf16,
            "bf16_speedup_wall": fp32["median_wall_s"] / bf16["median_wall_s"],
            "bf16_speedup_cpu": fp32["median_cpu_s"] / bf16["median_cpu_s"],
            "bf16_speedup_images_per_s": bf16["median_images_per_s"] / fp32["median_images_per_s"],
            "bf16_minus_fp32_acc_pt": 100 * (bf16["mean_test_acc"] - fp32["mean_test_acc"]),
        }
    print(f"\n{'recipe':<10}{'precision':<10}{'wall s':>8}{'CPU s':>8}{'img/s':>9}  test accuracy")
    for recipe, r in result["recipes"].items():
        for precision in ("fp32", "bf16"):
            s = r[precision]
            accs = " / ".join(f"{100 * a:.2f}" for a in s["test_acc"])
            print(
                f"{recipe:<10}{precision:<10}{s['median_wall_s']:>8.1f}{s['median_cpu_s']:>8.1f}"
                f"{s['median_images_per_s']:>9,.0f}  {accs} %"
            )
        print(
            f"{'':<10}bf16/fp32: wall {1 / r['bf16_speedup_wall']:.2f}x, CPU {1 / r['bf16_speedup_cpu']:.2f}x, "
            f"images/s {r['bf16_speedup_images_per_s']:.2f}x, "
            f"accuracy {r['bf16_minus_fp32_acc_pt']:+.2f} pt"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
