"""Benchmark: time to turn a phone photo into MNIST inputs (`images.extract`), per 1 MP and per 12 MP photo.

Usage: python scripts/bench_images.py [--repeats 15] [--data-dir ../shared/data]

The photos are scripts/make_photos.py's (a 4-digit number in chalk on a blackboard — the scene its seed 7 draws —
uneven light, JPEG), made at 1152×864 and 4000×3000 from MNIST test digits (the fixture in tests/data when the
full MNIST is absent). Prints hardware and versions, the median over repeats, and the ratio to the baseline
measured in the same run: decoding the same JPEG with `images.decode_gray` (what reading the photo costs anyway).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from mnistcnn import engine  # noqa: E402


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU (all threads of this process) milliseconds per call. On a shared machine the
    CPU time is the steadier figure: it does not count the time other processes held the cores."""
    fn()  # warm-up (imports, OpenCV's first calls)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def photo_bytes(size: tuple[int, int], digits: list[np.ndarray]) -> bytes:
    from make_photos import photo

    img, _ = photo(digits, np.random.default_rng(7), size)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    a = p.parse_args()

    from mnistcnn import data
    from mnistcnn.images import decode_gray, extract

    root = a.data_dir if (data.raw_dir(a.data_dir) / "t10k-images-idx3-ubyte").is_file() else None
    if root is None:  # the test fixture, unpacked
        import gzip
        import tempfile

        root = Path(tempfile.mkdtemp())
        data.raw_dir(root).mkdir(parents=True)
        for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            raw = ROOT / "tests" / "data" / "MNIST" / "raw" / f"{name}.gz"
            (data.raw_dir(root) / name).write_bytes(gzip.decompress(raw.read_bytes()))
    images, _ = data.load_split(root, train=False)
    digits = [images[k].numpy() for k in (0, 1, 2, 3)]
    cpu = f"{engine.cpu_name()}, {os.cpu_count()} cores"
    versions = f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}"
    print(f"cpu: {cpu}; {versions}; OpenCV threads {cv2.getNumThreads()}")
    for label, size, repeats in (
        ("1 MP", (1152, 864), a.repeats),
        ("12 MP", (4000, 3000), max(3, a.repeats // 3)),
    ):
        blob = photo_bytes(size, digits)
        gray = decode_gray(blob)
        decode = median_ms(lambda blob=blob: decode_gray(blob), repeats)
        work = median_ms(lambda gray=gray: extract(gray, multi=True), repeats)
        found = extract(gray, multi=True)
        what = (
            f"{label} ({size[0]}×{size[1]}, JPEG {len(blob) / 1e6:.2f} MB, {len(found.boxes)} digits found)"
        )
        print(
            f"{what}: extract {work[0]:.1f} ms wall, {work[1]:.1f} ms CPU (median of {repeats}); "
            f"baseline decode {decode[0]:.1f} ms wall, {decode[1]:.1f} ms CPU; ratio {work[1] / decode[1]:.2f}× (CPU)"
        )
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
