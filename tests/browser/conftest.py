"""The browser every test of this folder shares: one Playwright (its sync API runs one event loop per process,
so two session fixtures in one pytest-xdist worker would clash) driving Debian's Chromium. Skipped when Chromium
or Playwright is missing, unless MNISTCNN_REQUIRE_BROWSER=1 (CI): then they fail."""

from __future__ import annotations

import os
import shutil

import pytest

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
