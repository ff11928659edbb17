"""The page in Chromium against a real `mnistcnn serve`: decoded frames per second while dragging on the latent
map (the issue's >= 20), and the bytes of the page's first load (<= 300 KB).

Usage: `python scripts/bench_page.py --data-dir ../shared/data [--runs /tmp/bench-page] [--seconds 5]`
(trains a cvae on 6,000 images there first, once; needs Chromium: `apt-get install -y chromium`).
"""

import argparse
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mnistcnn import engine

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data-dir", type=Path, required=True, help="MNIST (the IDX files' folder, as --data-dir).")
ap.add_argument("--runs", type=Path, default=Path("/tmp/bench-page"), help="Where the run is kept.")
ap.add_argument("--seconds", type=float, default=5.0, help="How long each drag lasts.")
ap.add_argument("--drags", type=int, default=3, help="How many drags (the median is reported).")
args = ap.parse_args()
mnistcnn = [sys.executable, "-m", "mnistcnn"]
if not (args.runs / "cvae" / "last.pt").is_file():
    subprocess.run(
        [*mnistcnn, "train", "--config", "cvae", "--epochs", "1", "--train-limit", "6000", "--device", "cpu"]
        + ["--data-dir", str(args.data_dir), "--run-dir", str(args.runs / "cvae")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
serve = subprocess.Popen(
    [*mnistcnn, "serve", str(args.runs), "--port", "0", "--device", "cpu", "--data-dir", str(args.data_dir)],
    stdout=subprocess.PIPE,
    text=True,
)
url = next(m.group(0) for line in serve.stdout if (m := re.search(r"http://\S+", line)))

from playwright.sync_api import sync_playwright  # noqa: E402

loaded = []
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("response", lambda r: loaded.append(r))
    page.goto(url, wait_until="networkidle")
    first = [r for r in loaded if r.ok]
    first_load = sum(len(r.body()) for r in first)
    page.get_by_test_id("tab-generate").click()
    page.get_by_test_id("gen-run").select_option("cvae")
    canvas = page.get_by_test_id("latent-map")
    page.wait_for_function("() => +document.querySelector('[data-testid=latent-map]').dataset.frames >= 1")
    box = canvas.bounding_box()
    rates, latencies = [], []
    for _ in range(args.drags):
        before = int(canvas.get_attribute("data-frames"))
        page.mouse.move(box["x"] + 0.1 * box["width"], box["y"] + 0.5 * box["height"])
        page.mouse.down()
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:  # a slow circle, a pointer event every ~16 ms
            k += 1
            x = 0.5 + 0.4 * math.cos(k / 40)
            y = 0.5 + 0.4 * math.sin(k / 40)
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
            page.wait_for_timeout(16)
        elapsed = time.perf_counter() - start
        page.mouse.up()
        page.wait_for_load_state("networkidle")
        rates.append((int(canvas.get_attribute("data-frames")) - before) / elapsed)
        latencies.append(float(canvas.get_attribute("data-ms")))
    browser.close()
serve.send_signal(signal.SIGTERM)
serve.wait(30)
print(f"{engine.cpu_name()} ({' '.join(engine.simd_flags())}), {os.cpu_count()} cores, Python {platform.python_version()}")
print(f"first load: {first_load / 1024:.0f} KB ({len(first)} responses)")
print(
    f"latent drag: median {statistics.median(rates):.1f} decoded frames/s over {args.drags} drags of "
    f"{args.seconds:g} s (each: {', '.join(f'{r:.1f}' for r in rates)}); last frame request→shown "
    f"{statistics.median(latencies):.1f} ms"
)
