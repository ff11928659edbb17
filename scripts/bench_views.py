"""The page's new views, timed through the app (FastAPI's TestClient, one torch thread as `serve` uses): the
map's and the neighbours' first answers, then p50 of generate, a latent-map point, a mistakes cell, a test image.

Usage: `python scripts/bench_views.py --data-dir ../shared/data [--runs /tmp/bench-views]` (trains three small
runs there first: MyNet, cvae, gan on 3,000-6,000 images, once).
"""

import argparse
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from mnistcnn.config import load_config
from mnistcnn.report import PlainReporter
from mnistcnn.serve.app import create_app
from mnistcnn.train import train

torch.set_num_threads(1)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data-dir", type=Path, required=True, help="MNIST (the IDX files' folder, as --data-dir).")
ap.add_argument("--runs", type=Path, default=Path("/tmp/bench-views"), help="Where the small runs are kept.")
args = ap.parse_args()
root, data = args.runs, args.data_dir
print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
if not root.exists():
    for name, over in (
        ("mynet", {"epochs": 1, "batch_size": 64, "train_limit": 6000}),
        ("cvae", {"model": "cvae", "epochs": 1, "train_limit": 6000}),
        ("gan", {"model": "gan", "epochs": 1, "train_limit": 3000}),
    ):
        with open(os.devnull, "w") as sink:
            train(load_config(None, {"device": "cpu", **over}), data, root / name, PlainReporter(stream=sink))
c = TestClient(create_app(root, "cpu", data), base_url="http://localhost")


def p50(path, n=40, **kw):
    c.get(path, **kw)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        r = c.get(path, **kw)
        ts.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return statistics.median(ts)


t = time.perf_counter()
c.get("/api/map?run=mynet")
first = time.perf_counter() - t
print(f"map first {first:.2f} s, again p50 {p50('/api/map?run=mynet', 10):.1f} ms")
print(f"generate gan n=10 p50 {p50('/api/generate?run=gan&digit=3&n=10'):.1f} ms")
print(f"latent decode cvae p50 {p50('/api/latent/decode?run=cvae&u=0.5&v=-1&digit=2'):.1f} ms")
print(f"mistakes p50 {p50('/api/mistakes?run=mynet&true=4&pred=9'):.1f} ms")
print(f"test detail p50 {p50('/api/test/7?run=mynet&features=1'):.1f} ms")
t = time.perf_counter()
c.get("/api/test/7?run=mynet&neighbours=8")
print(
    f"neighbours first {time.perf_counter() - t:.2f} s; again p50 {p50('/api/test/7?run=mynet&neighbours=8', 10):.1f} ms"
)
