"""Start-up cost of a short `mnistcnn train` against the bare minimum a PyTorch training process pays.

Usage: python scripts/bench_startup.py --data-dir ../shared/data --device cpu --repeats 3 --out startup.json

Runs, alternating (so a drifting machine load hits both alike), each in a fresh process:
  baseline  python -c "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"
            (with --device cuda the tensor is created on the GPU, so CUDA initialisation is included)
  command   python -m mnistcnn train --epochs 1 --train-limit 64 --batch-size 64 --device cpu   (CPU)
            python -m mnistcnn train --config fast-gpu --device cuda   (CUDA: the GPU recipe)
and prints the median wall time and peak RSS of each, their difference and ratio, and whether the command
stays within the allowance of issue 13 (CPU: baseline + 2.5 s, CUDA: baseline + 2.0 s). --check exits 1 when
it does not. The command runs with this checkout's src/ first on PYTHONPATH, so no install is needed;
--compare-src OTHER/src times the same command from another checkout (before/after) in the same alternation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWANCE_S = {"cpu": 2.5, "cuda": 2.0}


def baseline_cmd(device: str) -> list[str]:
    where = ", device='cuda'" if device == "cuda" else ""
    code = f"import torch; torch.optim.Adam([torch.zeros(1{where}, requires_grad=True)])"
    return [sys.executable, "-c", code]


def train_cmd(device: str, data_dir: Path, run_dir: Path, train_limit: int) -> list[str]:
    # --batch-size: since the config check of issue 10 a batch may not exceed --train-limit (issue 13's command
    # had the default 128; the same one step on 64 images either way)
    if device == "cuda":
        recipe = ["--config", "fast-gpu"]
    elif device == "cpu":
        recipe = [
            "--epochs",
            "1",
            "--train-limit",
            str(train_limit),
            "--batch-size",
            str(min(train_limit, 128)),
        ]
    else:
        recipe = []
    return [
        sys.executable,
        "-m",
        "mnistcnn",
        "train",
        *recipe,
        "--device",
        device,
        "--data-dir",
        str(data_dir),
        "--run-dir",
        str(run_dir),
    ]


def timed(cmd: list[str], src: Path = ROOT / "src") -> dict:
    """Wall time and peak RSS of one child process; a failing child stops the benchmark with its output."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{text}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime
        + usage.ru_stime,  # less sensitive than wall time to other load on the machine
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "last_line": text.strip().splitlines()[-1:],
    }


def versions() -> dict:
    probe = (  # in a child: this process stays free of torch
        "import json, torch; from mnistcnn.engine import cpu_name, simd_flags; print(json.dumps({'torch': torch.__version__, "
        "'threads': torch.get_num_threads(), 'cpu': cpu_name(), 'cpu_flags': simd_flags()}))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    return {**json.loads(out), "python": platform.python_version(), "cores": os.cpu_count()}


def summary(runs: list[dict]) -> dict:
    return {
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "walls_s": [round(r["wall_s"], 3) for r in runs],
    }


def measure(device: str, data_dir: Path, repeats: int, train_limit: int, srcs: dict, log=print) -> dict:
    """Alternate the baseline and the command for each source in `srcs` (name -> src/ folder)."""
    runs: dict[str, list] = {"baseline": [], **{name: [] for name in srcs}}
    with tempfile.TemporaryDirectory(prefix="mnistcnn-startup-") as tmp:
        for name, src in srcs.items():  # page cache warm, data stamp written
            timed(train_cmd(device, data_dir, Path(tmp) / f"warm-{name}", train_limit), src)
        for i in range(repeats):
            runs["baseline"].append(timed(baseline_cmd(device)))
            for name, src in srcs.items():
                runs[name].append(
                    timed(train_cmd(device, data_dir, Path(tmp) / f"{name}{i}", train_limit), src)
                )
            log(f"  {i + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]['wall_s']:.2f} s" for k, v in runs.items()))
    result = {"device": device, **{name: summary(r) for name, r in runs.items()}}
    b, c = result["baseline"]["median_wall_s"], result["command"]["median_wall_s"]
    result.update(
        baseline_cmd=" ".join(baseline_cmd(device)[1:]),
        command_cmd=" ".join(train_cmd(device, data_dir, Path("RUN"), train_limit)[1:]),
        extra_s=c - b,
        ratio=c / b,
        allowance_s=ALLOWANCE_S[device],
        within=c - b <= ALLOWANCE_S[device],
        command_last_line=runs["command"][-1]["last_line"],
    )
    return result


def report(result: dict) -> None:
    b, c = result["baseline"], result["command"]
    rows = [("baseline", b, result["baseline_cmd"]), ("command", c, result["command_cmd"])]
    if "compared" in result:
        rows.append(("compared", result["compared"], f"the command with {result['compared_src']}"))
    for name, r, what in rows:
        print(
            f"{name:>9}: {r['median_wall_s']:.2f} s wall, {r['median_cpu_s']:.2f} s CPU, "
            f"peak RSS {r['median_peak_rss_mb']:.0f} MB  ({what})"
        )
    verdict = "within" if result["within"] else "OVER"
    print(
        f"command - baseline = {result['extra_s']:+.2f} s (ratio {result['ratio']:.2f}); {verdict} the allowance "
        f"of {result['allowance_s']} s; 1-min load average {result['load_avg_before']:.1f} before, "
        f"{result['load_avg_after']:.1f} after"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNISTCNN_DATA_DIR", "data")))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of each (medians reported)")
    p.add_argument("--train-limit", type=int, default=64, help="training images of the CPU command")
    p.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the mnistcnn source to run (another checkout's src/)"
    )
    p.add_argument(
        "--compare-src",
        type=Path,
        help="also time the command with this other src/ (e.g. the previous commit's), in the same alternation",
    )
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    p.add_argument(
        "--check", action="store_true", help="exit 1 when the command exceeds baseline + allowance"
    )
    args = p.parse_args()
    info = versions()
    print(
        f"{info['cpu']} ({info['cores']} cores), python {info['python']}, torch {info['torch']}, "
        f"{info['threads']} torch threads; {args.repeats} alternating runs"
    )
    print(f"CPU flags: {' '.join(info['cpu_flags']) or '(none of avx*/amx*)'}")
    srcs = {"command": args.src, **({"compared": args.compare_src} if args.compare_src else {})}
    result = {
        **info,
        "compared_src": str(args.compare_src),
        "src": str(args.src),
        "load_avg_before": os.getloadavg()[0],  # other work on a shared machine inflates every wall time
        **measure(args.device, args.data_dir, args.repeats, args.train_limit, srcs),
    }
    result["load_avg_after"] = os.getloadavg()[0]
    report(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.check and not result["within"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
