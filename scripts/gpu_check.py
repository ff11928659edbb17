"""Every GPU check of issue 13 in one run: tests, recipes, peer, lecture, whole-command walls, start-up.

Usage: python scripts/gpu_check.py --mnist-gz .gpu/raw --out "$OUT"     (a CUDA machine; ~6-8 min on an H100)
       python scripts/gpu_check.py --dry-run --out /tmp/check          (CPU, the test fixture: the code paths)

Runs with this checkout's src/ first on PYTHONPATH (nothing needs installing). Each check is a child process
with a time limit; a failing or timed-out check is reported (its output's tail printed, the whole of it in
gpu-check.log) and the run goes on to the next, then exits 1. Checks, in order:
  env       nvidia-smi, torch/CUDA versions, `mnistcnn data verify`
  tests     python -m pytest -q -x (-n 8 where pytest-xdist is installed)
  recipes   scripts/gpu_recipes.py: the fast and fast-gpu recipes over 5 seeds, the one-epoch sweep, step timings
  peer      scripts/peer_fast.py over 5 seeds (goal 1's baseline)
  lecture   the lecture's own loop at batch 10 (scripts/bench.py --measure lecture_loop, 20,000 images) and
            `mnistcnn train --config lecture` end to end (goal 2)
  walls     `mnistcnn train --config fast-gpu` twice, fast once, fast-gpu --compile once
  startup   scripts/bench_startup.py --device cuda (goal 3: command vs import torch + CUDA init + Adam)
Writes gpu-check.json (every figure, each goal's verdict) and gpu-check.log to --out (default $OUT).
MNIST: --data-dir holding MNIST/raw, or --mnist-gz a folder of the four .gz files (unpacked to a temp dir).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
LECTURE_ACC, LOOP_IMAGES = 0.9684, 20_000


def unpack(gz_dir: Path, dest: Path, sums: bool) -> Path:
    """The four .gz files of gz_dir as an MNIST data dir under dest (and a SHA256SUMS for a fixture subset)."""
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    lines = []
    for name in FILES:
        payload = gzip.decompress((gz_dir / f"{name}.gz").read_bytes())
        (raw / name).write_bytes(payload)
        lines.append(f"{hashlib.sha256(payload).hexdigest()}  {name}")
    if sums:
        (dest / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return dest


class Runner:
    """Runs the checks' child processes, keeps their logs and results, remembers failures."""

    def __init__(self, out: Path, env: dict, dry: bool) -> None:
        self.out, self.env, self.dry = out, env, dry
        self.log = (out / "gpu-check.log").open("w")
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.result: dict = {"checks": {}}
        self.failed: list[str] = []

    def child(self, check: str, cmd: list[str], timeout: float) -> tuple[bool, str]:
        """Run one command; False (and the tail printed) when it fails or outlives `timeout` seconds."""
        shown = " ".join(str(c) for c in cmd)
        self.log.write(f"\n===== {check}: {shown}\n")
        self.log.flush()
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
            )
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, text = 124, f"{e.stdout or ''}{e.stderr or ''}\nTIMED OUT after {timeout:.0f} s"
            text = text if isinstance(text, str) else text.decode(errors="replace")
        wall = time.perf_counter() - start
        self.log.write(f"{text}\n===== exit {rc}, {wall:.1f} s\n")
        self.log.flush()
        entry = self.result["checks"].setdefault(check, {"commands": []})
        entry["commands"].append({"cmd": shown, "rc": rc, "wall_s": round(wall, 3)})
        if rc != 0:
            self.failed.append(f"{check}: `{shown}` exited {rc}")
            tail = "\n".join(text.strip().splitlines()[-40:])
            print(f"FAILED ({check}, exit {rc}, {wall:.1f} s): {shown}\n{tail}", flush=True)
        return rc == 0, text

    def json_child(self, check: str, cmd: list[str], timeout: float, out: Path) -> dict | None:
        ok, _ = self.child(check, [*cmd, "--out", str(out)], timeout)
        return json.loads(out.read_text()) if ok and out.is_file() else None

    def train_cmd(self, check: str, config: str, extra: list[str], timeout: float) -> dict | None:
        """`mnistcnn train` as a user runs it: whole wall, training seconds and accuracy from metrics.jsonl."""
        run = Path(tempfile.mkdtemp(dir=self.work)) / "run"
        cmd = [sys.executable, "-m", "mnistcnn", "train", "--config", config, "--run-dir", str(run), *extra]
        start = time.perf_counter()
        ok, _ = self.child(check, cmd, timeout)
        if not ok:
            return None
        wall = time.perf_counter() - start
        test = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
        return {
            "config": config,
            "extra": extra,
            "wall_s": wall,
            "train_s": test["train_seconds"],
            "test_acc": test["test_acc"],
        }


def last_json(text: str) -> dict:
    return json.loads(next(line for line in reversed(text.splitlines()) if line.startswith("{")))


def check_env(r: Runner, a) -> None:
    smi = shutil.which("nvidia-smi")
    if smi:
        ok, text = r.child(
            "env", [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 60
        )
        r.result["gpu"] = text.strip() if ok else None
    elif not r.dry:
        r.failed.append("env: nvidia-smi not found (is this a CUDA machine?)")
    probe = (
        "import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, "
        "'cudnn': torch.backends.cudnn.version(), 'gpu': torch.cuda.is_available() and torch.cuda.get_device_name()}))"
    )
    ok, text = r.child("env", [sys.executable, "-c", probe], 120)
    r.result["versions"] = {**(last_json(text) if ok else {}), "python": sys.version.split()[0]}
    r.child("env", [sys.executable, "-m", "mnistcnn", "data", "verify", "--data-dir", str(a.data_dir)], 120)


def check_tests(r: Runner, a) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    if r.dry:
        pass  # one small test file: worker processes would cost more than they save
    elif importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "8"]
    else:
        print("note: pytest-xdist is not installed here; the tests run in one process", flush=True)
    ok, text = r.child("tests", cmd + a.pytest_args, 120 if r.dry else 360)
    r.result["tests"] = text.strip().splitlines()[-1] if text.strip() else ""


def check_recipes(r: Runner, a) -> None:
    cmd = [sys.executable, "scripts/gpu_recipes.py", "--data-dir", str(a.data_dir), "--device", a.device]
    r.result["recipes"] = r.json_child(
        "recipes", cmd + (["--dry-run"] if r.dry else []), 360, r.work / "recipes.json"
    )


def check_peer(r: Runner, a) -> None:
    cmd = [sys.executable, "scripts/peer_fast.py", "--data-dir", str(a.data_dir), "--device", a.device]
    cmd += ["--seeds", "1", "--train-limit", "512"] if r.dry else ["--seeds", "5"]
    r.result["peer"] = r.json_child("peer", cmd, 180, r.work / "peer.json")


def check_lecture(r: Runner, a) -> None:
    images = 100 if r.dry else LOOP_IMAGES
    cmd = [
        sys.executable,
        "scripts/bench.py",
        "--measure",
        "lecture_loop",
        "--device",
        a.device,
        "--data-dir",
        str(a.data_dir),
        "--batch-size",
        "10",
        "--images",
        str(images),
    ]
    ok, text = r.child("lecture", cmd, 240)
    loop = last_json(text) if ok else None
    if loop:
        loop["ten_epochs_s"] = 10 * 60_000 / loop["images_per_s"]  # the lecture trains 10 epochs of 60,000
    extra = ["--device", a.device, "--data-dir", str(a.data_dir)] + (
        ["--epochs", "1", "--train-limit", "200"] if r.dry else []
    )
    r.result["lecture"] = {"loop": loop, "recipe": r.train_cmd("lecture", "lecture", extra, 300)}


def check_walls(r: Runner, a) -> None:
    extra = ["--device", a.device, "--data-dir", str(a.data_dir)] + (
        ["--train-limit", "256"] if r.dry else []
    )
    runs = [("fast-gpu", [])]
    runs += [] if r.dry else [runs[0], ("fast", []), ("fast-gpu", ["--compile"])]
    r.result["walls"] = [r.train_cmd("walls", config, extra + more, 240) for config, more in runs]


def check_startup(r: Runner, a) -> None:
    cmd = [sys.executable, "scripts/bench_startup.py", "--device", a.device, "--data-dir", str(a.data_dir)]
    cmd += ["--repeats", "1" if r.dry else "3"]
    r.result["startup"] = r.json_child("startup", cmd, 300, r.work / "startup.json")


CHECKS = {
    "env": check_env,
    "tests": check_tests,
    "recipes": check_recipes,
    "peer": check_peer,
    "lecture": check_lecture,
    "walls": check_walls,
    "startup": check_startup,
}


def goal_recipe(res: dict) -> dict | None:
    """Goal 1: >= 99.0 % mean of 5 seeds, none below 98.9 %, <= 0.20 s of training, >= 2x ahead of the peer."""
    rec, peer = res.get("recipes"), res.get("peer")
    if not rec or not peer:
        return None
    ours = next(v for v in rec["recipes"] if v["name"] == "fast-gpu")
    ahead = peer["median_train_s"] / ours["median_train_s"]
    met = ours["mean_test_acc"] >= 0.99 and ours["min_test_acc"] >= 0.989 and ours["median_train_s"] <= 0.20
    five = [
        v
        for v in rec["sweep"]
        if len(v["runs"]) >= 5 and v["mean_test_acc"] >= 0.99 and v["min_test_acc"] >= 0.989
    ]
    return {
        "fast_gpu": {k: ours[k] for k in ("mean_test_acc", "min_test_acc", "median_train_s")},
        "peer_median_train_s": peer["median_train_s"],
        "peer_mean_test_acc": peer["mean_test_acc"],
        "ahead_of_peer": ahead,
        "met": met and ahead >= 2,
        "sweep_passing_5_seeds": [
            {k: v[k] for k in ("name", "mean_test_acc", "min_test_acc", "median_train_s")} for v in five
        ],
    }


def goal_lecture(res: dict) -> dict | None:
    """Goal 2: >= 25x the lecture loop in training time, >= 12x in whole-command time, within 0.5 pt of 96.84 %."""
    lec = res.get("lecture") or {}
    loop, recipe = lec.get("loop"), lec.get("recipe")
    if not loop or not recipe:
        return None
    train_x, wall_x = loop["ten_epochs_s"] / recipe["train_s"], loop["ten_epochs_s"] / recipe["wall_s"]
    close = abs(recipe["test_acc"] - LECTURE_ACC) <= 0.005
    return {
        "loop_10_epochs_s": loop["ten_epochs_s"],
        "train_s": recipe["train_s"],
        "wall_s": recipe["wall_s"],
        "test_acc": recipe["test_acc"],
        "train_speedup": train_x,
        "wall_speedup": wall_x,
        "met": train_x >= 25 and wall_x >= 12 and close,
    }


def goal_startup(res: dict) -> dict | None:
    """Goal 3 (GPU half): the fast recipe's command within (import torch + CUDA init + Adam) + 2 s."""
    s = res.get("startup")
    if not s:
        return None
    return {
        "baseline_s": s["baseline"]["median_wall_s"],
        "command_s": s["command"]["median_wall_s"],
        "extra_s": s["extra_s"],
        "allowance_s": s["allowance_s"],
        "met": s["within"],
    }


def summarize(r: Runner) -> None:
    res = r.result
    res["goals"] = {
        "1_gpu_recipe": goal_recipe(res),
        "2_lecture": goal_lecture(res),
        "3_startup": goal_startup(res),
    }
    print(
        "\n== summary"
        + (" (DRY RUN on the CPU with the fixture: these are not measurements)" if r.dry else "")
    )
    print(f"gpu: {res.get('gpu')}; versions: {res.get('versions')}; tests: {res.get('tests')}")
    for v in (res.get("recipes") or {}).get("recipes", []) + (res.get("recipes") or {}).get("sweep", []):
        print(
            f"  {v['name']:<28} {len(v['runs'])} seeds: mean {100 * v['mean_test_acc']:.2f} % "
            f"(min {100 * v['min_test_acc']:.2f} %), median training {v['median_train_s']:.3f} s"
        )
    for w in res.get("walls") or []:
        if w:
            print(
                f"  wall {w['config']} {' '.join(w['extra'][4:])}: {w['wall_s']:.1f} s, "
                f"training {w['train_s']:.3f} s, {100 * w['test_acc']:.2f} %"
            )
    for name, goal in res["goals"].items():
        state = "not measured (a check failed)" if goal is None else ("MET" if goal["met"] else "not met")
        print(f"goal {name}: {state}" + ("" if goal is None else f"  {json.dumps(goal)}"))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNISTCNN_DATA_DIR", "data")))
    p.add_argument(
        "--mnist-gz", type=Path, help="folder of the four MNIST .gz files (unpacked to a temp dir)"
    )
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check-out")))
    p.add_argument("--dry-run", action="store_true", help="on the CPU with the test fixture, tiny sizes")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(CHECKS)}")
    p.add_argument(
        "--pytest-args", nargs=argparse.REMAINDER, default=None, help="(last) arguments for pytest"
    )
    a = p.parse_args()
    only = a.only.split(",") if a.only else list(CHECKS)
    if unknown := [c for c in only if c not in CHECKS]:
        p.error(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    a.out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    r = Runner(a.out, env, a.dry_run)
    if a.dry_run or a.mnist_gz:
        gz = ROOT / "tests" / "data" / "MNIST" / "raw" if a.dry_run else a.mnist_gz
        a.data_dir = unpack(gz, r.work / "mnist", sums=a.dry_run)
        if a.dry_run:  # the fixture is a subset of MNIST: verify it against its own digests
            env["MNISTCNN_SHA256SUMS"] = str(a.data_dir / "SHA256SUMS")
    a.device = "cpu" if a.dry_run else "cuda"
    if a.pytest_args is None:
        a.pytest_args = ["tests/test_stepper.py", "-k", "chunk_for"] if a.dry_run else []
    env["MNISTCNN_DATA_DIR"] = str(a.data_dir)
    start = time.perf_counter()
    for name in only:
        print(f"== {name} ({time.perf_counter() - start:.0f} s in)", flush=True)
        CHECKS[name](r, a)
    r.result.update(dry_run=a.dry_run, seconds=time.perf_counter() - start, failed=r.failed)
    summarize(r)
    (a.out / "gpu-check.json").write_text(json.dumps(r.result, indent=2) + "\n")
    shutil.rmtree(r.work, ignore_errors=True)
    print(f"wrote {a.out / 'gpu-check.json'} and gpu-check.log; {time.perf_counter() - start:.0f} s")
    if r.failed:
        print("FAILED checks:\n  " + "\n  ".join(r.failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
