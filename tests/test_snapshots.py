"""`train --keep-epochs`: RUN/epochs/epoch-NNN.pt after every epoch — the weights only, loadable by every command
that reads a checkpoint, refused by --resume; `rundir.snapshots` lists them and nothing else."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnistcnn import checkpoint, data, rundir
from mnistcnn.cli import app
from mnistcnn.errors import CheckpointError, MnistcnnError

runner = CliRunner()
TINY = ["--train-limit", "512", "--batch-size", "64", "--device", "cpu", "--log-every", "1000"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def accuracy(output: str) -> str:
    return output.split("test accuracy ")[1].split(" %")[0]


def error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def kept(mnist_root, tmp_path_factory) -> tuple[Path, str]:
    """A 3-epoch MyNet run with --keep-epochs, trained through the CLI: (run folder, its output)."""
    run = tmp_path_factory.mktemp("snapshots") / "run"
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse digest fixture is not active yet
        mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
        result = invoke(
            "train", *TINY, "--epochs", 3, "--keep-epochs", "--data-dir", mnist_root, "--run-dir", run
        )
    assert result.exit_code == 0, result.output
    return run, result.output


def test_every_epoch_is_kept_weights_only(kept):
    run, output = kept
    found = rundir.snapshots(run)
    assert found == [(n, run / "epochs" / f"epoch-{n:03d}.pt") for n in (1, 2, 3)]
    assert sorted(p.name for p in (run / "epochs").iterdir()) == [
        "epoch-001.pt",
        "epoch-002.pt",
        "epoch-003.pt",
    ]
    assert f"{run / 'epochs' / 'epoch-001.pt'} … epoch-003.pt" in output
    last = checkpoint.load(run / "last.pt")
    for n, path in found:
        snap = checkpoint.load(path)
        assert snap["epoch"] == n and snap["snapshot"] is True and "optimizer" not in snap
        assert snap["run_id"] == last["run_id"] and snap["kind"] == "mynet"
        assert [r["epoch"] for r in snap["metrics"]] == list(range(1, n + 1))
        assert checkpoint.normalization(snap) == checkpoint.normalization(last)
        # 41,866 fp32 parameters = 167,464 bytes, plus the zip container and the config
        assert 167_464 < path.stat().st_size < 200_000, path.stat().st_size
    final = checkpoint.load(found[-1][1])["model"]
    assert final.keys() == last["model"].keys()
    assert all(torch.equal(final[k], last["model"][k]) for k in final)
    first = checkpoint.load(found[0][1])["model"]
    assert not torch.equal(first["fc1.weight"], final["fc1.weight"])  # each epoch its own weights


def test_eval_of_a_snapshot_prints_its_epochs_accuracy(kept, mnist_root):
    run, output = kept
    figures = set()
    for path in (run / "epochs" / "epoch-003.pt", run / "last.pt", run / "best.pt"):
        result = invoke("eval", path, "--data-dir", mnist_root, "--device", "cpu")
        assert result.exit_code == 0, result.output
        figures.add(accuracy(result.output))
    assert figures == {accuracy(output)}
    earlier = invoke("eval", run / "epochs" / "epoch-001.pt", "--data-dir", mnist_root, "--device", "cpu")
    assert earlier.exit_code == 0, earlier.output
    ckpt, model = checkpoint.load_model(run / "epochs" / "epoch-002.pt", "cpu", needs=None)
    assert ckpt["epoch"] == 2 and not model.training


def test_a_snapshot_cannot_be_resumed(kept, mnist_root):
    run, _ = kept
    path = run / "epochs" / "epoch-002.pt"
    with pytest.raises(CheckpointError, match="per-epoch snapshot") as e:
        checkpoint.load(path, resume=True)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))
    before = sorted(p.name for p in run.rglob("*"))
    result = invoke("train", "--resume", path, "--epochs", 5, "--data-dir", mnist_root)
    assert result.exit_code == 2, result.output
    errors = error_lines(result.output)
    assert len(errors) == 1 and "per-epoch snapshot" in errors[0] and "--resume" in errors[0], result.output
    assert "Traceback" not in result.output and sorted(p.name for p in run.rglob("*")) == before


def test_snapshot_marker_must_be_a_bool(kept, tmp_path):
    snap = checkpoint.load(kept[0] / "epochs" / "epoch-001.pt")
    checkpoint.save(tmp_path / "odd.pt", {**snap, "snapshot": 1})
    with pytest.raises(CheckpointError, match="snapshot must be true or false; got 1"):
        checkpoint.load(tmp_path / "odd.pt")


def test_without_the_flag_no_epochs_folder(train_run, tmp_path):
    run = train_run(tmp_path / "run", epochs=1, train_limit=128, batch_size=64)
    assert not (run / "epochs").exists() and rundir.snapshots(run) == []


def test_a_resumed_run_keeps_the_flag_and_replaces_a_redone_epoch(train_run, tmp_path, mnist_root):
    run = train_run(tmp_path / "run", epochs=1, train_limit=128, batch_size=64, keep_epochs=True)
    shutil.copy(run / "last.pt", tmp_path / "after-1.pt")
    result = invoke("train", "--resume", run, "--epochs", 2, "--data-dir", mnist_root)  # no --keep-epochs
    assert result.exit_code == 0, result.output
    assert [n for n, _ in rundir.snapshots(run)] == [1, 2]
    # back to the end of epoch 1, a stale epoch-002.pt in place: re-doing epoch 2 replaces it
    shutil.copy(tmp_path / "after-1.pt", run / "last.pt")
    shutil.copy(run / "epochs" / "epoch-001.pt", run / "epochs" / "epoch-002.pt")
    result = invoke("train", "--resume", run, "--epochs", 2, "--data-dir", mnist_root)
    assert result.exit_code == 0, result.output
    snap, last = checkpoint.load(run / "epochs" / "epoch-002.pt"), checkpoint.load(run / "last.pt")
    assert snap["epoch"] == 2 and all(torch.equal(snap["model"][k], v) for k, v in last["model"].items())


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_generative_kinds_keep_loadable_snapshots(kind, train_run, tmp_path):
    run = train_run(tmp_path / kind, model=kind, epochs=2, train_limit=128, batch_size=64, keep_epochs=True)
    found = rundir.snapshots(run)
    assert [n for n, _ in found] == [1, 2]
    last = checkpoint.load(run / "last.pt")["model"]
    for n, path in found:
        ckpt, model = checkpoint.load_model(path, "cpu", needs=None)
        assert ckpt["kind"] == kind and ckpt["epoch"] == n and "optimizer" not in ckpt
    snap = checkpoint.load(found[-1][1])["model"]
    assert snap.keys() == last.keys() and all(torch.equal(snap[k], last[k]) for k in snap)
    if kind == "gan":  # the moving-average generator that samples, as in last.pt
        assert any(k.startswith("g_ema.") for k in snap)


def test_snapshots_lists_only_the_runs_own_files(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "epochs").mkdir(parents=True)
    outside.mkdir()
    (outside / "epoch-009.pt").write_bytes(b"not ours")
    folder = run / "epochs"
    for name in ("epoch-001.pt", "epoch-010.pt", "epoch-1000.pt"):
        (folder / name).write_bytes(b"x")
    for junk in (
        "epoch-2.pt",
        "epoch-0003.pt",
        "epoch-000.pt",
        "epoch-004.pt.tmp1",
        "notes.txt",
        ".epoch-005.pt",
    ):
        (folder / junk).write_bytes(b"x")
    (folder / "epoch-006.pt").mkdir()
    os.mkfifo(folder / "epoch-007.pt")
    (folder / "epoch-008.pt").symlink_to(outside / "epoch-009.pt")  # out of the run: ignored
    (folder / "epoch-011.pt").symlink_to(folder / "epoch-001.pt")  # inside the run: a file of it
    (folder / "epoch-012.pt").symlink_to(folder / "missing.pt")
    assert rundir.snapshots(run) == [
        (1, folder / "epoch-001.pt"),
        (10, folder / "epoch-010.pt"),
        (11, folder / "epoch-011.pt"),
        (1000, folder / "epoch-1000.pt"),
    ]
    shutil.rmtree(folder)
    folder.symlink_to(outside, target_is_directory=True)  # the whole folder a link out of the run
    assert rundir.snapshots(run) == []
    assert rundir.snapshots(tmp_path / "nothing") == []


@pytest.mark.parametrize("planted", ["file", "link"])
def test_an_epochs_folder_that_is_not_one_is_one_line(planted, train_run, tmp_path, mnist_root):
    run = train_run(tmp_path / "run", epochs=1, train_limit=128, batch_size=64)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if planted == "file":
        (run / "epochs").write_bytes(b"a file")
    else:
        (run / "epochs").symlink_to(elsewhere, target_is_directory=True)
    result = invoke("train", "--resume", run, "--epochs", 2, "--keep-epochs", "--data-dir", mnist_root)
    assert result.exit_code == 2, result.output
    errors = error_lines(result.output)
    assert len(errors) == 1 and "epochs is not a folder" in errors[0], result.output
    assert list(elsewhere.iterdir()) == [] and checkpoint.load(run / "last.pt")["epoch"] == 2


def test_a_failed_snapshot_write_is_one_line(tmp_path, monkeypatch):
    run = rundir.RunDir.create(tmp_path / "run")
    try:
        real_mkdir = os.mkdir

        def full(path, *args, **kwargs):
            if Path(path).name == "epochs":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", full)
        with pytest.raises(MnistcnnError, match=r"cannot write .*epochs: no space left on device") as e:
            run.snapshot_path(1)
        assert "\n" not in str(e.value)
    finally:
        run.unlock()
