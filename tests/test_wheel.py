"""The built wheel works without the checkout: it holds the page's static files and every recipe, and installed
into a fresh venv it runs `mnistcnn recipes` and `mnistcnn train --config fast` from an empty folder.

The venv borrows the dependencies (torch, ...) of the interpreter running the tests through a .pth line naming
its site-packages: a plain path line, so the .pth files there (the checkout's editable install) are not run, and
mnistcnn comes from the wheel (checked). The wheel is built from a copy of the sources with this environment's
setuptools (the dev extra), so no network is needed. About 15 s on a 2-core machine.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mnistcnn"


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, (
        f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of pyproject.toml, README.md and src/ (the checkout gets no build/ folder)."""
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copy(ROOT / "README.md", tree)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            out,
            tree,
        ]
    )
    (found,) = out.glob("mnistcnn-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; its bin/ folder."""
    env = tmp_path_factory.mktemp("venv")
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    # install first: pip must not see the borrowed site-packages, where the checkout's mnistcnn is registered
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])
    target = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # the site-packages of the interpreter running the tests (and, for a --system-site-packages venv, the base's)
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | set(site.getsitepackages())
    (target / "_borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return env / "bin"


def clean_env(**extra) -> dict:
    """This process's environment without anything that points into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "MNISTCNN_DATA_DIR")}
    return {**env, **extra}


def test_the_wheel_holds_the_page_and_every_recipe(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    static = {f"mnistcnn/serve/static/{p.name}" for p in (PACKAGE / "serve" / "static").iterdir()}
    recipes = {f"mnistcnn/recipes/{p.name}" for p in (PACKAGE / "recipes").glob("*.toml")}
    assert {"mnistcnn/serve/static/index.html", "mnistcnn/serve/static/app.js"} <= static
    assert {
        "mnistcnn/recipes/fast.toml",
        "mnistcnn/recipes/lecture.toml",
        "mnistcnn/recipes/default.toml",
    } <= recipes
    missing = sorted((static | recipes | {"mnistcnn/recipes/__init__.py"}) - names)
    assert not missing, f"not in the wheel: {missing}"


def test_installed_wheel_lists_recipes_and_trains_fast_from_an_empty_folder(installed, mnist_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env()
    where = run([installed / "python", "-c", "import mnistcnn; print(mnistcnn.__file__)"], cwd=empty, env=env)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout  # the wheel's, not ours
    listing = run([installed / "mnistcnn", "recipes"], cwd=empty, env=env).stdout
    assert all(f"\n{name} " in listing for name in ("default", "fast", "fast-gpu", "lecture")), listing
    fast = run([installed / "mnistcnn", "recipes", "fast"], cwd=empty, env=env).stdout
    assert fast == (PACKAGE / "recipes" / "fast.toml").read_text()
    flags = ["--train-limit", "64", "--epochs", "1", "--device", "cpu", "--data-dir", mnist_root]
    trained = run(
        [installed / "mnistcnn", "train", "--config", "fast", *flags, "--run-dir", "run"], cwd=empty, env=env
    )
    assert "test accuracy" in trained.stdout, trained.stdout
    assert '"recipe": "fast"' in (empty / "run" / "config.json").read_text()
    assert sorted(p.name for p in empty.iterdir()) == ["run"]  # nothing else written where it ran
