"""Benchmark mnistcnn's engine against the lecture's training loop, side by side on one device.

Usage: python scripts/bench.py --data-dir ../shared/data --device cpu --out bench-cpu.json

Measures, in one run:
  1. the lecture loop (DataLoader + per-sample ToTensor, fp32) images/s at --batch-size and at batch 10, as the
     lecture's code runs: glibc's default malloc settings;
  2. mnistcnn's engine images/s at --batch-size with the same model and optimizer, with the malloc settings the
     mnistcnn command uses (mnistcnn.hostalloc); (1) and (2) alternate --throughput-repeats times (medians), each in
     a fresh process; then once more with the malloc settings swapped, to show what they alone are worth;
  3. `mnistcnn train --config fast`: whole-command wall time and test accuracy (median of --repeats);
  4. with --lecture-e2e: `mnistcnn train --config lecture` end to end, against the lecture loop's
     full 10-epoch time (extrapolated from its measured epoch at batch 10).
Prints a table and writes JSON with the ratios, device name, versions and CPU flags.
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

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mnistcnn import data  # noqa: E402
from mnistcnn.config import TrainConfig  # noqa: E402
from mnistcnn.engine import cpu_name, describe, resolve_device, simd_flags, use_channels_last  # noqa: E402
from mnistcnn.hostalloc import tune_host_allocator  # noqa: E402
from mnistcnn.model import MyNet  # noqa: E402
from mnistcnn.stepper import Stepper, make_optimizer  # noqa: E402


class LectureNet(nn.Module):
    """MyNet as the lecture writes it (activation before pooling)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(2304, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc1(torch.flatten(x, 1))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lecture_loop(root, device, batch_size: int, images: int) -> dict:
    """The lecture's loop, as written there: DataLoader(shuffle) + ToTensor, Adam 1e-5, loss.item() per step."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model = LectureNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    criterion = nn.CrossEntropyLoss()
    warmup, seen, running = 5, 0, 0.0
    start = None
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        running += loss.item()
        if i >= warmup:
            seen += len(x)
            if seen >= images:
                break
    sync(device)
    seconds = time.perf_counter() - start
    return {"batch_size": batch_size, "images": seen, "seconds": seconds, "images_per_s": seen / seconds}


def engine_loop(root, device, batch_size: int, images: int) -> dict:
    """mnistcnn's step on device-resident data, same model, optimizer and batch size (fp32)."""
    cfg = TrainConfig(batch_size=batch_size, lr=1e-5, schedule="none", mean=None, std=None, precision="fp32")
    x_u8, y = data.load_split(root, train=True)
    x = data.to_device(x_u8, device, 0.0, 1.0)
    channels_last = use_channels_last("auto", device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = y.to(device)
    model = MyNet().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    graphs = device.type == "cuda"
    optimizer = make_optimizer(cfg, model.parameters(), device, capturable=graphs)
    stepper = Stepper(model, optimizer, x, y, device, "fp32", batch_size, graphs)
    perm = data.epoch_permutation(len(x), 0, 0).to(device)
    k = stepper.chunk
    lrs, table = [cfg.lr] * k, torch.full((k,), cfg.lr, device=device)
    blocks = len(x) // (k * batch_size)

    def block(i):
        j = i % blocks
        return perm[j * k * batch_size : (j + 1) * k * batch_size]

    for i in range(3):  # warm-up
        stepper.steps(block(i), lrs, table)
    sync(device)
    start = time.perf_counter()
    seen, i = 0, 3
    while seen < images:
        stepper.steps(block(i), lrs, table)
        seen += k * batch_size
        i += 1
    sync(device)
    seconds = time.perf_counter() - start
    return {"batch_size": batch_size, "images": seen, "seconds": seconds, "images_per_s": seen / seconds}


def in_subprocess(what: str, args, batch_size: int, images: int, tuned_malloc: bool) -> dict:
    """One throughput measurement in a fresh process, so allocator state and settings never leak between them."""
    cmd = [
        sys.executable,
        __file__,
        "--measure",
        what,
        "--device",
        args.device,
        "--data-dir",
        str(args.data_dir),
        "--batch-size",
        str(batch_size),
        "--images",
        str(images),
    ] + (["--tuned-malloc"] if tuned_malloc else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return {**json.loads(proc.stdout.splitlines()[-1]), "mnistcnn_malloc": tuned_malloc}


def median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["images_per_s"])
    return {**ordered[len(ordered) // 2], "all_images_per_s": [r["images_per_s"] for r in runs]}


def cli_train(args, config: str, extra: list[str]) -> dict:
    """`mnistcnn train` in a subprocess: whole-command wall time, test accuracy and training seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "mnistcnn",
            "train",
            "--config",
            config,  # a shipped recipe's name, or a TOML file
            "--device",
            args.device,
            "--data-dir",
            str(args.data_dir),
            "--run-dir",
            f"{tmp}/run",
            *extra,
        ]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        records = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    test = next(r for r in records if r["type"] == "test")
    epochs = [r for r in records if r["type"] == "epoch"]
    return {
        "wall_s": wall,
        "test_acc": test["test_acc"],
        "train_s": sum(r["seconds"] for r in epochs),
        "epochs": len(epochs),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNISTCNN_DATA_DIR", "data")))
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=128, help="batch size for the throughput comparison")
    p.add_argument("--images", type=int, default=15_000, help="images timed per throughput measurement")
    p.add_argument("--throughput-repeats", type=int, default=3, help="alternations of (1) and (2); medians")
    p.add_argument(
        "--lecture-epoch-images", type=int, default=60_000, help="images of the batch-10 lecture epoch"
    )
    p.add_argument("--repeats", type=int, default=3, help="runs of the fast recipe (median reported)")
    p.add_argument("--fast-config", default="fast", help="a recipe name or TOML file")
    p.add_argument("--lecture-e2e", action="store_true", help="also run the lecture recipe end to end")
    p.add_argument("--skip-fast", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench.json"))
    p.add_argument("--measure", choices=["lecture_loop", "engine_loop"], help=argparse.SUPPRESS)
    p.add_argument("--tuned-malloc", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()

    device = resolve_device(args.device)
    args.device = str(device)
    root = args.data_dir
    if args.measure:  # a child process of the run below: one measurement, printed as JSON
        if args.tuned_malloc:
            tune_host_allocator()
        fn = lecture_loop if args.measure == "lecture_loop" else engine_loop
        print(json.dumps(fn(root, device, args.batch_size, args.images)))
        return
    data.ensure_mnist(root, print)
    result = {
        "device": str(device),
        "device_name": describe(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_flags": simd_flags(),
        "threads": torch.get_num_threads(),
    }
    print(f"device {result['device_name']}, torch {torch.__version__}")
    print(f"CPU {result['cpu']}; flags {' '.join(result['cpu_flags']) or '(none of avx*/amx*)'}")

    lecture_runs, engine_runs = [], []
    for _ in range(args.throughput_repeats):  # alternate, so drifting machine load hits both alike
        lecture_runs.append(in_subprocess("lecture_loop", args, args.batch_size, args.images, False))
        engine_runs.append(in_subprocess("engine_loop", args, args.batch_size, args.images, True))
    result["lecture_loop"] = median_run(lecture_runs)
    result["engine"] = median_run(engine_runs)
    result["engine_vs_lecture"] = result["engine"]["images_per_s"] / result["lecture_loop"]["images_per_s"]
    print(
        f"batch {args.batch_size}: lecture loop {result['lecture_loop']['images_per_s']:,.0f} img/s, "
        f"engine {result['engine']['images_per_s']:,.0f} img/s ({result['engine_vs_lecture']:.2f}x; medians "
        f"of {args.throughput_repeats})"
    )
    # the allocator setting alone, both ways: what it gives the lecture loop, what the engine is without it
    result["lecture_loop_mnistcnn_malloc"] = in_subprocess(
        "lecture_loop", args, args.batch_size, args.images, True
    )
    result["engine_default_malloc"] = in_subprocess("engine_loop", args, args.batch_size, args.images, False)
    print(
        f"batch {args.batch_size}, malloc swapped: lecture loop with mnistcnn's settings "
        f"{result['lecture_loop_mnistcnn_malloc']['images_per_s']:,.0f} img/s, engine with glibc's defaults "
        f"{result['engine_default_malloc']['images_per_s']:,.0f} img/s"
    )

    lec10 = in_subprocess("lecture_loop", args, 10, args.lecture_epoch_images, False)
    lec10["epoch_s"] = 60_000 / lec10["images_per_s"]
    result["lecture_loop_b10"] = lec10
    print(f"batch 10: lecture loop {lec10['images_per_s']:,.0f} img/s, one epoch {lec10['epoch_s']:.1f} s")

    if not args.skip_fast:
        runs = [cli_train(args, args.fast_config, []) for _ in range(args.repeats)]
        walls = [r["wall_s"] for r in runs]
        result["fast"] = {
            "runs": runs,
            "median_wall_s": statistics.median(walls),
            "median_train_s": statistics.median(r["train_s"] for r in runs),
            "min_test_acc": min(r["test_acc"] for r in runs),
            "wall_vs_lecture_epoch": statistics.median(walls) / lec10["epoch_s"],
        }
        print(
            f"fast recipe: median wall {result['fast']['median_wall_s']:.1f} s "
            f"({result['fast']['wall_vs_lecture_epoch']:.2f}x one lecture epoch), "
            f"median training {result['fast']['median_train_s']:.2f} s, "
            f"test acc {[round(100 * r['test_acc'], 2) for r in runs]} %"
        )

    if args.lecture_e2e:
        run = cli_train(args, "lecture", [])
        lecture_total = 10 * lec10["epoch_s"]
        result["lecture_e2e"] = {
            **run,
            "lecture_loop_10_epochs_s": lecture_total,
            "speedup_wall": lecture_total / run["wall_s"],
            "speedup_train": lecture_total / run["train_s"],
        }
        print(
            f"lecture recipe: mnistcnn {run['wall_s']:.1f} s wall ({run['train_s']:.1f} s training), "
            f"test acc {100 * run['test_acc']:.2f} %; lecture loop 10 epochs ≈ {lecture_total:.0f} s; "
            f"speed-up {result['lecture_e2e']['speedup_wall']:.1f}x wall"
        )

    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
