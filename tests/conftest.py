"""Shared fixtures: a small real-MNIST folder (2,000 train / 1,000 test images cut from MNIST)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from mnistcnn import data

FIXTURE = Path(__file__).parent / "data" / "MNIST" / "raw"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A data dir in torchvision's layout holding the fixture, and $MNISTCNN_SHA256SUMS naming its digests."""
    root = tmp_path_factory.mktemp("mnist")
    raw = data.raw_dir(root)
    raw.mkdir(parents=True)
    lines = []
    for name in data.FILES:
        payload = gzip.decompress((FIXTURE / f"{name}.gz").read_bytes())
        (raw / name).write_bytes(payload)
        lines.append(f"{hashlib.sha256(payload).hexdigest()}  {name}")
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(autouse=True)
def fixture_digests(mnist_root, monkeypatch):
    """Verify against the fixture's digests (the canonical ones are for the full MNIST)."""
    monkeypatch.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    monkeypatch.delenv(data.ENV_DIR, raising=False)
    monkeypatch.delenv("MNISTCNN_CPU_BF16", raising=False)  # `auto` follows this CPU unless a test forces it


@pytest.fixture
def mnist_copy(mnist_root, tmp_path) -> Path:
    """A private, writable copy of the fixture data dir (for tests that damage it)."""
    dest = tmp_path / "data"
    shutil.copytree(mnist_root, dest)
    return dest


@pytest.fixture
def no_network(monkeypatch):
    """Both download routes fail as they do without network."""

    def fail(root, timeout):
        raise data.DataError("no network")

    monkeypatch.setattr(data, "_fetch_torchvision", fail)
    monkeypatch.setattr(data, "_fetch_pypi", fail)


@pytest.fixture(scope="session")
def train_run(mnist_root):
    """A function `train_run(run_dir, **config) -> run_dir` that trains on the fixture (quietly, on the CPU),
    for tests that need a checkpoint."""
    from mnistcnn.config import load_config
    from mnistcnn.report import PlainReporter
    from mnistcnn.train import train

    def run_training(run: Path, **overrides) -> Path:
        mp = pytest.MonkeyPatch()
        mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
        try:
            cfg = load_config(None, {"batch_size": 32, "device": "cpu", **overrides})
            with open(os.devnull, "w") as sink:
                train(cfg, mnist_root, run, PlainReporter(stream=sink))
        finally:
            mp.undo()
        return run

    return run_training


@pytest.fixture(scope="session")
def tanh_run(train_run, tmp_path_factory) -> Path:
    """One epoch on the fixture with tanh (so loading must honour the activation): for the explain/view tests."""
    return train_run(tmp_path_factory.mktemp("views") / "run", epochs=1, activation="tanh")


def shared_mnist() -> Path | None:
    """The full MNIST beside the checkout (development machines), else None."""
    return SHARED if all((data.raw_dir(SHARED) / f).is_file() for f in data.FILES) else None


@pytest.fixture
def full_mnist(monkeypatch) -> Path:
    root = shared_mnist()
    if root is None:
        pytest.skip("full MNIST not found at ../shared/data")
    monkeypatch.delenv(data.ENV_SUMS, raising=False)
    return root


def recipe_run(tmp_path_factory, name: str, threads: int | None = None) -> tuple[Path, dict]:
    """A shipped recipe trained once on the full MNIST for the whole session, shared by pytest-xdist's workers
    (the first to come trains under a lock, the others wait and reuse): (run folder, train's result)."""
    import fcntl
    import json

    import torch

    from mnistcnn.config import load_config
    from mnistcnn.report import PlainReporter
    from mnistcnn.train import train

    root = shared_mnist()
    if root is None:
        pytest.skip("full MNIST not found at ../shared/data")
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this session
    run, done = shared / f"{name}-recipe-run", shared / f"{name}-recipe-result.json"
    with open(shared / f"{name}-recipe.lock", "w") as lock, pytest.MonkeyPatch.context() as mp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            mp.delenv(data.ENV_SUMS, raising=False)
            cfg = load_config(name, {"device": "cpu"})
            share = torch.get_num_threads()  # the xdist worker's share of the cores (pytest_configure)
            torch.set_num_threads(threads or share)
            try:
                with open(os.devnull, "w") as sink:
                    result = train(cfg, root, run, PlainReporter(stream=sink))
            finally:
                torch.set_num_threads(share)
            done.write_text(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float, str))}))
    return run, json.loads(done.read_text())


@pytest.fixture(scope="session")
def fast_recipe_run(tmp_path_factory) -> tuple[Path, dict]:
    """The fast recipe on the full MNIST, trained once per session (see recipe_run)."""
    # with torch's default threads, as `mnistcnn train --config fast` runs it: its 99 % depends on the thread count
    # (oneDNN's reduction order): on the AMX Xeon 99.05 % (fp32) / 99.06 % (bf16) with 2 threads, 98.94 % / 98.96 %
    # with 1. The generative recipes keep the worker's share: 2 threads beside the other worker made the suite
    # 30 min 45 s instead of ~20 here, and their tests hold loose bounds (green with 1 thread on both CPU kinds).
    return recipe_run(tmp_path_factory, "fast", threads=os.cpu_count() or 1)


os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config):
    """Under pytest-xdist, each worker computes on its share of the cores: 2 workers × 2 threads on 2 cores made
    a CPU-bound test several times slower (OpenMP threads waiting for a core the other worker holds)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


# --- the browser every test of tests/browser shares: one Playwright per process (its sync API runs one event
# loop; two session fixtures in one pytest-xdist worker clash). Skipped when Chromium or Playwright is missing,
# unless MNISTCNN_REQUIRE_BROWSER=1 (CI): then they fail.

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if shutil.which("chromium") is None:
        return "chromium is not installed (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="session")
def chromium():
    why = _missing()
    if why:
        if os.environ.get("MNISTCNN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MNISTCNN_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def allowed():
    """Console errors a test expects (a 400 the page shows): substrings of the messages."""
    return []


@pytest.fixture
def page(chromium, server, request, allowed):
    """A fresh page on the module's `server`; fails the test if the page requests anything from elsewhere or logs
    an error, except the console errors a test lists in `allowed` (a 400 the page shows)."""
    viewport = getattr(request, "param", {"width": 1280, "height": 900})
    context = chromium.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    foreign, errors = [], []
    page.on("request", lambda r: r.url.startswith((server.url, "data:", "blob:")) or foreign.append(r.url))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    yield page
    context.close()
    assert not foreign, f"the page fetched from elsewhere: {foreign}"
    unexpected = [e for e in errors if not any(a in e for a in allowed)]
    assert not unexpected, f"the page logged errors: {unexpected}"
