import os
import pickle
import random

import pytest
import torch

from mnistcnn import checkpoint
from mnistcnn.config import TrainConfig
from mnistcnn.errors import CheckpointError
from mnistcnn.model import MyNet


def make_state(model=None):
    model = model or MyNet()
    return {"model": model.state_dict(), "config": TrainConfig().to_dict(), "epoch": 1, "metrics": []}


def test_roundtrip_rebuilds_the_model(tmp_path):
    torch.manual_seed(1)
    model = MyNet()
    checkpoint.save(tmp_path / "last.pt", make_state(model))
    assert not [p for p in tmp_path.iterdir() if p.name != "last.pt"]  # no temporary file left behind
    ckpt = checkpoint.load(tmp_path / "last.pt")
    assert ckpt["version"] == checkpoint.FORMAT_VERSION
    rebuilt = checkpoint.model_from_checkpoint(ckpt)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), model.eval()(x))
    assert checkpoint.normalization(ckpt) == (0.1307, 0.3081)
    assert checkpoint.load(tmp_path)["epoch"] == 1  # a run folder resolves to its last.pt


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({**make_state(), "extra": Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="not a plain mnistcnn checkpoint"):
        checkpoint.load(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable checkpoint"),
        (os.urandom(4096), "not a readable checkpoint"),
        (pickle.dumps({"model": 1}), "not a readable checkpoint|not a plain"),
    ],
)
def test_garbage_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_random_bytes_are_clear_errors(tmp_path):
    # os.urandom once made torch's weights_only unpickler raise IndexError (a traceback, not a clear line)
    path = tmp_path / "x.pt"
    for seed in range(300):
        rng = random.Random(seed)
        path.write_bytes(rng.randbytes(rng.choice([1, 7, 64, 4096])))
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            checkpoint.load(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save(path, make_state())
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)


def test_newer_version_and_wrong_shape(tmp_path):
    path = tmp_path / "new.pt"
    torch.save({**make_state(), "version": checkpoint.FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="newer than this mnistcnn"):
        checkpoint.load(path)
    state = make_state()
    state["model"]["fc1.weight"] = torch.zeros(10, 100)
    checkpoint.save(path, state)
    with pytest.raises(CheckpointError, match="does not hold MyNet weights"):
        checkpoint.model_from_checkpoint(checkpoint.load(path), path)


def test_missing_and_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mnistcnn checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {**make_state(), "epoch": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match="No space left"):
        checkpoint.save(path, {**make_state(), "epoch": 2})
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_read_only_folder_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from pathlib import Path

    path = tmp_path / "last.pt"
    checkpoint.save(path, {**make_state(), "epoch": 1})
    real_open = Path.open

    def read_only(self, mode="r", *args, **kwargs):
        if "w" in mode:
            raise PermissionError(13, "Permission denied")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    with pytest.raises(CheckpointError, match="Permission denied"):
        checkpoint.save(path, {**make_state(), "epoch": 2})
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 1
