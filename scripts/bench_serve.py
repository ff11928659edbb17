"""Benchmark `mnistcnn serve`: POST /api/predict of a 300×300 PNG from concurrent clients.

Usage: python scripts/bench_serve.py [--checkpoint RUN/last.pt] [--clients 8] [--requests 2000]

Measures, in one run:
  1. baseline: the same work in-process, one image after another (decode the PNG, find the digit, MyNet, the
     input PNG) — what one request costs without HTTP;
  2. `mnistcnn serve` started as a real process on a free loopback port (uvicorn, as a user runs it), then
     --requests POSTs from --clients threads, each on its own keep-alive connection, after a warm-up.
  3. with --browser N: the page in Debian's Chromium (Playwright), a 7 drawn with the mouse N times; the time from
     the stroke's end to the prediction shown (the page records it), median and max.
Prints hardware and versions, requests/s, p50/p90/p99 latency, errors, and the server's throughput as a ratio of
the baseline's. Weights do not change the cost: without --checkpoint an untrained MyNet is served.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mnistcnn import engine  # noqa: E402


def sample_png() -> bytes:
    """A 300×300 PNG of a 7 drawn in dark ink on white, as a page or a phone sends."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(img).line([(80, 60), (220, 60), (130, 250)], fill=0, width=24)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def untrained_checkpoint(folder: Path) -> Path:
    from mnistcnn import checkpoint
    from mnistcnn.model import MyNet

    path = folder / "untrained.pt"
    checkpoint.save(path, {"model": MyNet().state_dict(), "config": {"mean": 0.1307, "std": 0.3081}})
    return path


def baseline(ckpt_path: Path, body: bytes, n: int) -> tuple[float, float]:
    """(wall seconds per image, median of n; CPU seconds per image, mean) of the server's work done in this
    process, sequentially."""
    import cv2
    import torch

    from mnistcnn.hostalloc import tune_host_allocator
    from mnistcnn.serve.models import Models
    from mnistcnn.serve.reading import read_upload
    from mnistcnn.serve.server import THREADS

    tune_host_allocator()  # as the CLI does for the server
    torch.set_num_threads(THREADS)  # and the server's threads
    cv2.setNumThreads(THREADS)
    loaded = Models("cpu").get("bench", ckpt_path)
    for _ in range(n // 10):  # warm-up
        read_upload(loaded, body, "bench.png")
    times, cpu0 = [], time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        read_upload(loaded, body, "bench.png")
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (time.process_time() - cpu0) / n


def start_server(ckpt_path: Path) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "mnistcnn", "serve", str(ckpt_path), "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    found = re.search(r"http://([\d.]+):(\d+)/", line)
    if not found:
        proc.kill()
        sys.exit(f"the server printed no URL: {line!r}")
    return proc, found.group(1), int(found.group(2))


def load(host: str, port: int, body: bytes, clients: int, requests: int) -> tuple[list[float], int, float]:
    """(latencies in s, errors, wall seconds) of `requests` POSTs shared by `clients` threads."""
    latencies, errors, lock = [], [0], threading.Lock()
    left = [requests]

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
                resp = conn.getresponse()
                ok = resp.status == 200 and b'"prediction"' in resp.read()
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                errors[0] += not ok
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - t0


def browser_latency(url: str, n: int) -> list[float]:
    """Milliseconds from a stroke's end to its prediction on the page, for n strokes drawn with the mouse."""
    import shutil

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        box = page.get_by_test_id("pad").bounding_box()
        at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])  # noqa: E731
        times = []
        for _ in range(n):
            page.get_by_test_id("clear").click()
            page.mouse.move(*at(0.25, 0.22))
            page.mouse.down()
            page.mouse.move(*at(0.75, 0.22), steps=8)
            page.mouse.move(*at(0.45, 0.82), steps=8)
            page.mouse.up()
            handle = page.wait_for_function("() => document.getElementById('prediction').dataset.ms")
            times.append(float(handle.json_value()))
            page.evaluate("() => delete document.getElementById('prediction').dataset.ms")
        browser.close()
    return times


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to serve (default: an untrained MyNet)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--browser", type=int, default=0, metavar="N", help="also time N strokes in Chromium")
    args = parser.parse_args()
    if args.clients < 1 or args.requests < 1:
        parser.error("--clients and --requests must be >= 1")
    if args.checkpoint is not None and not args.checkpoint.exists():
        parser.error(f"--checkpoint {args.checkpoint} does not exist")

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or untrained_checkpoint(Path(tmp))
        body = sample_png()
        base, base_cpu = baseline(ckpt, body, 200)
        proc, host, port = start_server(ckpt)
        try:
            load(host, port, body, args.clients, args.warmup)
            cpu0, own0 = cpu_seconds(proc.pid), time.process_time()
            latencies, errors, wall = load(host, port, body, args.clients, args.requests)
            server_cpu = (cpu_seconds(proc.pid) - cpu0) / args.requests
            client_cpu = (time.process_time() - own0) / args.requests
            strokes = browser_latency(f"http://{host}:{port}/", args.browser) if args.browser else []
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)

    q = statistics.quantiles(latencies, n=100, method="inclusive")
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rate = len(latencies) / wall
    print(f"hardware: {engine.cpu_name()}, {os.cpu_count()} logical CPUs; {platform.platform()}")
    print(
        f"versions: python {platform.python_version()}, torch {version('torch')}, fastapi {version('fastapi')}, "
        f"uvicorn {version('uvicorn')}, pillow {version('pillow')}"
    )
    print(
        f"load average at the end: {busy:.1f} (other processes on a shared machine slow every figure below)"
    )
    print(
        f"body: 300×300 PNG, {len(body):,} bytes; checkpoint: {ckpt if args.checkpoint else 'untrained MyNet'}"
    )
    print(
        f"baseline (in-process, sequential): {1000 * base:.2f} ms per image = {1 / base:.0f} images/s; "
        f"CPU time {1000 * base_cpu:.2f} ms per image"
    )
    print(
        f"server: {args.requests} requests from {args.clients} clients in {wall:.2f} s = {rate:.0f} requests/s "
        f"({rate * base:.2f}× the baseline); latency p50 {1000 * q[49]:.1f} ms, p90 {1000 * q[89]:.1f} ms, "
        f"p99 {1000 * q[98]:.1f} ms; errors {errors}; server exit code {code}"
    )
    if server_cpu:
        print(
            f"server CPU time: {1000 * server_cpu:.2f} ms per request (user + system, all threads), i.e. "
            f"{(os.cpu_count() or 1) / server_cpu:.0f} requests/s if the server had all {os.cpu_count()} CPUs; "
            f"{server_cpu / base_cpu:.2f}× the baseline's CPU time (the rest is HTTP, JSON and threads)"
        )
    print(f"clients' CPU time: {1000 * client_cpu:.2f} ms per request")
    if strokes:
        print(
            f"page (Chromium): stroke end → prediction shown, {len(strokes)} strokes: median "
            f"{statistics.median(strokes):.1f} ms, max {max(strokes):.1f} ms"
        )


if __name__ == "__main__":
    main()
