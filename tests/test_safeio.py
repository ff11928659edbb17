"""The file policy (safeio) at every reader and writer: links out of a named folder, special files, sizes, names;
output failures at the CLI boundary; signals during an atomic write. Each case fails without its fix.

Usage: `python -m pytest tests/test_safeio.py -q`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnistcnn import outputs, safeio
from mnistcnn.cli import app
from mnistcnn.errors import MnistcnnError
from mnistcnn.rundir import RunDir, read_metrics
from mnistcnn.safeio import shown

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

runner = CliRunner()
SECRET = "api_key = hunter2\n"
RECORD = b'{"type":"batch","epoch":1,"step":1,"loss":2.3}\n'
SRC = str(Path(__file__).parents[1] / "src")


@pytest.fixture(scope="module")
def trained(train_run, tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("safeio") / "run", epochs=1)


@pytest.fixture
def run(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text(SECRET)
    return path


def one_error(result) -> str:
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


# --- links out of the folder the user named ---------------------------------------------------------------


@pytest.mark.parametrize("name", [".mnistcnn.lock", "metrics.jsonl", "config.json"])
def test_resume_never_writes_through_a_link_out_of_the_run_folder(name, run, secret, mnist_root):
    (run / name).unlink()
    (run / name).symlink_to(secret)
    result = runner.invoke(
        app, ["train", "--resume", str(run), "--epochs", "2", "--data-dir", str(mnist_root)]
    )
    error = one_error(result)
    assert name in error and "link" in error, error
    assert secret.read_text() == SECRET


def test_a_lock_or_metrics_shared_by_a_hard_link_is_refused(tmp_path, secret):
    folder = tmp_path / "r"
    folder.mkdir()
    os.link(secret, folder / ".mnistcnn.lock")
    with pytest.raises(MnistcnnError, match="hard links"):
        RunDir(folder).lock()
    (folder / ".mnistcnn.lock").unlink()
    os.link(secret, folder / "metrics.jsonl")
    with pytest.raises(MnistcnnError, match="hard links"):
        RunDir(folder).append({"type": "batch", "epoch": 1, "step": 1, "loss": 1.0})
    assert secret.read_text() == SECRET


def test_an_atomic_write_replaces_a_link_and_never_follows_a_planted_temporary(tmp_path, secret):
    out = tmp_path / "out.png"
    out.symlink_to(secret)  # named by the user: the link is replaced, its target untouched
    outputs.write_bytes(out, b"new")
    assert out.read_bytes() == b"new" and not out.is_symlink() and secret.read_text() == SECRET
    planted = tmp_path / f".out.png.tmp{os.getpid()}"
    planted.symlink_to(secret)  # a link where the temporary file goes
    outputs.write_bytes(out, b"newer")
    assert out.read_bytes() == b"newer" and secret.read_text() == SECRET and not planted.exists()


@pytest.mark.parametrize("command", ["eval", "plot-loss"])
def test_cli_reads_nothing_through_a_link_out_of_a_named_run_folder(
    command, run, tmp_path, trained, mnist_root
):
    name = {"eval": "last.pt", "plot-loss": "metrics.jsonl"}[command]
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(trained / name, other / name)
    (run / name).unlink()
    (run / name).symlink_to(other / name)
    (run / "best.pt").unlink()
    args = [command, str(run)] + (["--data-dir", str(mnist_root)] if command == "eval" else [])
    error = one_error(runner.invoke(app, args))
    assert "link to outside" in error and name in error, error


def test_server_shows_nothing_through_a_link_out_of_the_served_folder(run, secret, trained, mnist_root):
    from mnistcnn.serve.app import create_app

    root = run.parent / "served"
    root.mkdir()
    shutil.move(run, root / "run")
    run = root / "run"
    (run / "config.json").unlink()
    (run / "config.json").symlink_to(secret)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(trained / "metrics.jsonl")
    (root / "away").symlink_to(trained, target_is_directory=True)  # a whole run folder linked in
    c = TestClient(
        create_app(root, "cpu", mnist_root), base_url="http://localhost", raise_server_exceptions=False
    )
    listing = c.get("/api/runs")
    assert listing.status_code == 200 and "hunter2" not in listing.text, listing.text
    assert [r["name"] for r in listing.json()["runs"]] == ["run"]
    assert listing.json()["runs"][0]["config"] == {}
    r = c.get("/api/runs/run/metrics")
    assert r.status_code == 403 and "link" in r.json()["error"], r.text
    (run / "last.pt").unlink()
    (run / "last.pt").symlink_to(trained / "last.pt")
    r = c.get("/api/model?run=run")
    assert r.status_code == 403 and "link" in r.json()["error"], r.text


# --- special files: one line, never a hang ----------------------------------------------------------------


def test_special_files_are_one_line_and_never_hang(run, tmp_path, mnist_root, monkeypatch):
    fifo(run / "metrics.jsonl")
    start = time.monotonic()
    assert "FIFO" in one_error(runner.invoke(app, ["plot-loss", str(run), "--out", str(tmp_path / "l.png")]))
    with pytest.raises(MnistcnnError, match="FIFO"):
        read_metrics(run / "metrics.jsonl")
    toml = fifo(tmp_path / "c.toml")
    assert "FIFO" in one_error(
        runner.invoke(app, ["train", "--config", str(toml), "--data-dir", str(mnist_root)])
    )
    monkeypatch.setenv("MNISTCNN_SHA256SUMS", str(fifo(tmp_path / "SUMS")))
    assert "FIFO" in one_error(runner.invoke(app, ["data", "verify", "--data-dir", str(mnist_root)]))
    out = fifo(tmp_path / "out.png")
    assert "not a regular file" in one_error(runner.invoke(app, ["show", "activations", "--out", str(out)]))
    assert time.monotonic() - start < 30  # each would block for ever on a plain open()


def test_a_socket_or_a_device_is_refused(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "metrics.jsonl"))
        with pytest.raises(MnistcnnError, match="socket"):
            read_metrics(tmp_path / "metrics.jsonl")
    finally:
        sock.close()
    with pytest.raises(safeio.Refused, match="character device"):
        safeio.read_capped("/dev/zero", safeio.CONFIG_CAP)


def test_a_checkpoint_that_is_a_device_is_one_line(tmp_path):
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    error = one_error(runner.invoke(app, ["summary", str(tmp_path / "zero.pt")]))
    assert "zero.pt" in error, error


# --- sizes: caps and streams ------------------------------------------------------------------------------


def test_a_huge_sparse_metrics_file_is_one_line_and_costs_nothing(run, tmp_path, mnist_root):
    from mnistcnn.serve.app import create_app

    with open(run / "metrics.jsonl", "r+b") as f:
        f.truncate(2_000_000_000)  # 2 GB of holes after the real records
    error = one_error(runner.invoke(app, ["plot-loss", str(run), "--out", str(tmp_path / "l.png")]))
    assert "holds 1.9 GiB, more than the 256 MiB" in error, error
    c = TestClient(create_app(run, "cpu", mnist_root), base_url="http://localhost")
    tracemalloc.start()
    listing, poll = c.get("/api/runs"), c.get("/api/runs/run/metrics")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert listing.status_code == 200 and poll.status_code == 200
    assert peak < 100e6, peak  # the listing reads 16 MB of the tail at most, a poll one 8 MB chunk
    assert poll.json()["offset"] <= 8 << 20


def test_a_long_line_of_zeros_is_skipped_not_held(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with open(path, "wb") as f:
        f.write(RECORD)
        f.truncate(50_000_000)
        f.seek(0, 2)
        f.write(b"\n" + RECORD)
    tracemalloc.start()
    records, skipped = read_metrics(path, skip_bad=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(records) == 2 and skipped == 1 and peak < 5e6, peak


def test_a_resume_streams_its_metrics_cut_back(run, monkeypatch):
    """The cut-back rewrite reads line by line (records_of), never the whole file (read_metrics)."""
    from mnistcnn import rundir
    from mnistcnn.checkpoint import load

    monkeypatch.setattr(rundir, "read_metrics", None)
    before = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    RunDir.reopen(run, load(run / "last.pt")).unlock()
    after = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert after == [r for r in before if r["type"] != "test"] and len(after) > 1


def test_oversized_configs_are_one_line(tmp_path, mnist_root):
    big = tmp_path / "c.toml"
    with open(big, "wb") as f:
        f.truncate(safeio.CONFIG_CAP + 1)
    error = one_error(runner.invoke(app, ["train", "--config", str(big), "--data-dir", str(mnist_root)]))
    assert "c.toml holds 1,048,577 bytes, more than the 1 MiB" in error, error


# --- names ------------------------------------------------------------------------------------------------


def test_shown_escapes_controls_bidi_and_bytes_and_is_idempotent():
    assert shown("a\nb\x1b[2Jc\x07") == "a\\nb\\x1b[2Jc\\x07"
    assert shown(os.fsdecode(b"run-\xff\xfe")) == "run-\\xff\\xfe"
    assert shown(b"x\x9by") == "x\\x9by"
    assert shown("evil\u202etxt.png") == "evil\\u202etxt.png"
    assert shown("ok ü 数字 \\ path/x.png") == "ok ü 数字 \\ path/x.png"
    assert shown(shown("a\x1bb\udcff")) == shown("a\x1bb\udcff")


def test_a_run_folder_whose_name_is_not_utf8_is_listed_escaped(trained, tmp_path, mnist_root):
    from mnistcnn.serve.app import create_app

    root = tmp_path / "runs"
    root.mkdir()
    odd = os.fsdecode(b"run-\xff\x1b[31m")
    shutil.copytree(trained, root / odd)
    c = TestClient(
        create_app(root, "cpu", mnist_root), base_url="http://localhost", raise_server_exceptions=False
    )
    listing = c.get("/api/runs")
    assert listing.status_code == 200, listing.text
    (row,) = listing.json()["runs"]
    assert row["name"] == "run-\\xff\\x1b[31m" and row["epochs_done"] == 1
    metrics = c.get("/api/runs/" + row["name"].replace("\\", "%5C").replace("[", "%5B") + "/metrics")
    assert metrics.status_code == 200 and metrics.json()["records"], metrics.text


def test_a_metrics_record_holding_an_escaped_lone_surrogate_is_no_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"type":"batch","epoch":1,"step":1,"loss":2.3,"note":"\\udcff"}\n' + RECORD)
    assert read_metrics(path, skip_bad=True) == ([json.loads(RECORD)], 1)


@pytest.mark.parametrize("name", ["new\nline.pt", "esc\x1b]0;pwned\x07.pt", os.fsdecode(b"bad-\xff.pt")])
def test_every_error_line_escapes_the_names_it_holds(name, tmp_path):
    error = one_error(runner.invoke(app, ["eval", str(tmp_path / name)]))
    assert "\x1b" not in error and "\x07" not in error and "\udcff" not in error
    assert shown(name) in error


def test_printed_paths_are_escaped(tmp_path):
    out = tmp_path / "a\x1b[2Jb.png"
    result = runner.invoke(app, ["show", "activations", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {shown(out)}\n" and out.is_file()


# --- output failures: at the CLI boundary, through a real process ----------------------------------------


def mnistcnn(args, stdout, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "mnistcnn", *map(str, args)]
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=120, **kw)


def commands(trained, mnist_root, tmp_path, seven_png) -> dict[str, list]:
    ckpt, data = trained / "last.pt", ["--data-dir", mnist_root]
    return {
        "help": ["--help"],
        "version": ["--version"],
        "summary": ["summary", ckpt],
        "eval": ["eval", ckpt, *data],
        "eval-json": ["eval", ckpt, *data, "--json"],
        "predict": ["predict", ckpt, seven_png, seven_png],
        "show-activations": ["show", "activations", "--out", tmp_path / "a.png", "--force"],
        "data-verify": ["data", "verify", *data],
        "usage-error": ["train", "--batch-size", "abc"],
    }


@pytest.fixture(scope="module")
def seven_png(tmp_path_factory) -> Path:
    from PIL import Image, ImageDraw

    path = tmp_path_factory.mktemp("seven") / "seven.png"
    img = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(img).line([(30, 25), (90, 25), (50, 100)], fill=0, width=10)
    img.save(path)
    return path


NAMES = ["help", "version", "summary", "eval", "eval-json", "predict", "show-activations", "data-verify"]


@pytest.mark.parametrize("name", NAMES)
def test_stdout_on_a_full_disk_is_one_line_exit_2(name, trained, mnist_root, tmp_path, seven_png):
    args = commands(trained, mnist_root, tmp_path, seven_png)[name]
    with open("/dev/full", "w") as full:
        done = mnistcnn(args, full)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.splitlines() == [
        "error: cannot write to standard output: no space left on device; free some space or send the "
        "output elsewhere"
    ], err


@pytest.mark.parametrize("name", NAMES)
def test_stdout_to_a_closed_pipe_is_silent_exit_2(name, trained, mnist_root, tmp_path, seven_png):
    """A reader that has gone (`| head -1` after its line): no traceback, no message (as cat or ls), exit 2."""
    args = commands(trained, mnist_root, tmp_path, seven_png)[name]
    read, write = os.pipe()
    os.close(read)
    try:
        done = mnistcnn(args, write)
    finally:
        os.close(write)
    assert done.returncode == 2 and done.stderr == b"", done.stderr.decode()


def test_a_usage_error_with_stderr_on_a_full_disk_is_still_exit_2(trained, mnist_root, tmp_path, seven_png):
    env = {**os.environ, "PYTHONPATH": SRC}
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "mnistcnn", "train", "--batch-size", "abc"],
            stdout=full,
            stderr=full,
            env=env,
            timeout=60,
        )
    assert done.returncode == 2


# --- signals during an atomic write -----------------------------------------------------------------------

WRITER = """
import os, signal, sys, time
from pathlib import Path
from matplotlib.figure import Figure
real = Figure.savefig
SIG, MARK = getattr(signal, sys.argv[1]), Path(sys.argv[2])

def savefig(self, f, *a, **k):  # half a picture written, then the signal
    f.write(b"\\x89PNG half")
    f.flush()
    MARK.write_text("writing")
    os.kill(os.getpid(), SIG)
    time.sleep(5)
    return real(self, f, *a, **k)

Figure.savefig = savefig
from mnistcnn.cli import app
sys.argv = ["mnistcnn", *sys.argv[3:]]
app()
"""


@pytest.mark.parametrize(
    "sig, code", [("SIGTERM", -signal.SIGTERM), ("SIGHUP", -signal.SIGHUP), ("SIGINT", 130)]
)
def test_a_signal_during_an_atomic_write_removes_its_temporary_file(sig, code, tmp_path):
    out = tmp_path / "acts.png"
    out.write_bytes(b"\x89PNG\r\n\x1a\n an older picture")
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-c", WRITER, sig, tmp_path / "mark", "show", "activations", "--out", out]
    done = subprocess.run(list(map(str, cmd)), capture_output=True, env=env, timeout=60)
    assert (tmp_path / "mark").exists(), done.stderr.decode()  # the signal came mid-write
    assert done.returncode == code, done.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.png", "mark"]  # no .acts.png.tmpPID
    assert out.read_bytes() == b"\x89PNG\r\n\x1a\n an older picture"
    assert b"Traceback" not in done.stderr


def test_a_stdout_closed_at_start_is_one_line_exit_2(tmp_path):
    """`mnistcnn show activations --out x.png >&-`: fd 1 is held on /dev/null (the picture cannot be opened on
    it and receive the output), the write of `wrote ...` is the one error."""
    env = {**os.environ, "PYTHONPATH": SRC}
    out = tmp_path / "x.png"
    done = subprocess.run(
        [sys.executable, "-m", "mnistcnn", "show", "activations", "--out", str(out)],
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode().splitlines() == [
        "error: cannot write to standard output: the stream is closed; send the output elsewhere"
    ]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_lines_escape_the_image_names(trained, seven_png, tmp_path):
    odd = tmp_path / "seven\r\x1b[1A.png"
    shutil.copy(seven_png, odd)
    result = runner.invoke(app, ["predict", str(trained / "last.pt"), str(odd)])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(f"{tmp_path}/seven\\r\\x1b[1A.png: ") and "\x1b" not in line


def test_a_special_sha256sums_names_the_variable(tmp_path, monkeypatch, mnist_root):
    monkeypatch.setenv("MNISTCNN_SHA256SUMS", "/dev/zero")
    error = one_error(runner.invoke(app, ["data", "verify", "--data-dir", str(mnist_root)]))
    assert "$MNISTCNN_SHA256SUMS" in error and "character device" in error, error
