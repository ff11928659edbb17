"""Microseconds per optimizer step of the engine on a GPU, for engine settings side by side.

Usage: python scripts/gpu_steps.py --data-dir DIR --out steps.json
Each variant: MyNet on resident MNIST, CUDA-graph replay in chunks, timed over --steps steps after capture.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mnistcnn import data  # noqa: E402
from mnistcnn.config import TrainConfig  # noqa: E402
from mnistcnn.model import MyNet  # noqa: E402
from mnistcnn.stepper import Stepper, make_optimizer  # noqa: E402


def measure(x, y, batch_size, precision, benchmark, channels_last, compile_, chunk, steps):
    dev = x.device
    torch.backends.cudnn.benchmark = benchmark
    cfg = TrainConfig(batch_size=batch_size, lr=1e-4)
    torch.manual_seed(0)
    model = MyNet().to(dev)
    xx = x
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        xx = x.contiguous(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compile_ else model
    opt = make_optimizer(cfg, model.parameters(), dev, capturable=True)
    t = time.perf_counter()
    import mnistcnn.stepper as st

    old = st.chunk_for
    st.chunk_for = lambda bs, d: chunk
    stepper = Stepper(fwd, opt, xx, y, dev, precision, batch_size, True)
    st.chunk_for = old
    setup = time.perf_counter() - t
    perm = data.epoch_permutation(len(x), 0, 0).to(dev)
    k = stepper.chunk
    table = torch.full((k,), 1e-4, device=dev)
    lrs = [1e-4] * k
    blocks = len(x) // (k * batch_size)
    for i in range(3):
        stepper.steps(perm[i * k * batch_size : (i + 1) * k * batch_size], lrs, table)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    n = 0
    i = 0
    while n < steps:
        j = i % blocks
        stepper.steps(perm[j * k * batch_size : (j + 1) * k * batch_size], lrs, table)
        n += k
        i += 1
    end.record()
    torch.cuda.synchronize()
    us = start.elapsed_time(end) * 1000 / n
    return {
        "batch_size": batch_size,
        "precision": precision,
        "cudnn_benchmark": benchmark,
        "channels_last": channels_last,
        "compile": compile_,
        "chunk": k,
        "us_per_step": us,
        "setup_s": setup,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    p.add_argument("--out", type=Path, default=Path("gpu-steps.json"))
    args = p.parse_args()
    dev = torch.device("cuda")
    images, labels = data.load_split(args.data_dir, train=True)
    x = data.to_device(images, dev, 0.1307, 0.3081)
    y = labels.to(dev)
    rows = []
    for bs, prec in ((10, "fp32"), (32, "bf16"), (32, "fp32"), (64, "bf16"), (128, "bf16")):
        variants = [(b, cl, False, c) for b in (False, True) for cl in (False, True) for c in (1, 64)]
        if args.compile and bs in (10, 32) and prec != "fp32" or (args.compile and bs == 10):
            variants.append((True, False, True, 64))
        for benchmark, cl, comp, chunk in variants:
            try:
                row = measure(x, y, bs, prec, benchmark, cl, comp, chunk, args.steps)
            except Exception as e:  # keep measuring the other variants
                row = {"batch_size": bs, "precision": prec, "error": f"{type(e).__name__}: {str(e)[:200]}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.write_text(
        json.dumps(
            {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
