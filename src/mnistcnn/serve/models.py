"""Checkpoints the server has loaded, each once, and its expensive views (test-set metrics, failures) computed
on first request and kept.

Usage: `models = Models("cpu", data_dir)`; `m = models.get(path)`; `m.evaluation()`.
A checkpoint file that changed on disk (a run still training) is loaded again on its next use.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mnistcnn.errors import MnistcnnError
from mnistcnn.serve.runs import NotFound

_log = logging.getLogger("mnistcnn.serve")
FAILURES = 36  # the gallery's size, as `mnistcnn failures`
MAX_FILE = 64 * 2**20  # MyNet's checkpoint with its optimizer state is ~0.5 MB
MAX_UNPACKED = 256 * 2**20


@dataclass
class Loaded:
    name: str
    path: Path
    stamp: tuple[int, int]  # (mtime_ns, size) when loaded
    ckpt: dict
    model: object
    device: str
    data_dir: Path | None
    models: Models | None = None  # the test and training sets, shared by every checkpoint
    _lock: threading.RLock = field(default_factory=threading.RLock)  # a view's computation may ask another
    _memo: dict = field(default_factory=dict)

    def need(self, needs: str, command: str):
        """The checkpoint's kind if `command` can use it (kinds.require's `needs`), else one 400 line."""
        from mnistcnn import kinds

        return kinds.require(self.ckpt, self.name, needs, command)

    @property
    def kind(self):
        from mnistcnn import kinds

        return kinds.of_checkpoint(self.ckpt)

    def memo(self, key: str, compute):
        """`compute()` once per checkpoint (a view that takes seconds: the map, the latent plane); two first
        requests wait for one computation."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    def info(self) -> dict:
        """Summary rows, parameter count, the config it was trained with and conv1's kernels: cheap."""
        from mnistcnn.explain import summary
        from mnistcnn.model import MyNet

        self.need("mynet", "the Model tab")
        rows, total, classic = summary(MyNet(self.model.activation))  # shapes only: a CPU twin will do
        config = self.ckpt.get("config") if isinstance(self.ckpt.get("config"), dict) else {}
        weights = self.model.conv1.weight.detach().float().cpu().numpy()[:, 0]  # (32, 3, 3)
        return {
            "name": self.name,
            "activation": self.model.activation,
            "layers": [{"name": n, "shape": list(s), "parameters": p} for n, s, p in rows],
            "parameters": total,
            "classic": classic,
            "config": config,
            "epoch": self.ckpt.get("epoch"),
            "filters": weights.round(5).tolist(),
        }

    def evaluation(self) -> dict:
        """Test accuracy, confusion matrix and the most confident failures; computed once per checkpoint."""
        return {k: v for k, v in self.memo("evaluation", self._evaluate).items() if k != "pass"}

    def test_pass(self) -> dict:
        """The evaluation's own pass over the test set: images (uint8), labels, pred, probs (numpy): the Map and
        the Mistakes views read these, so their counts are the confusion matrix's."""
        return self.memo("evaluation", self._evaluate)["pass"]

    def _evaluate(self) -> dict:
        import numpy as np

        from mnistcnn.checkpoint import model_from_checkpoint
        from mnistcnn.explain import predict_test_set

        self.need("mynet", "the Model tab")
        from mnistcnn.serve.pictures import png_data_url

        # one pass, on a private copy of exactly the weights this entry serves (the pass may change its memory
        # format; the served model keeps answering meanwhile): accuracy and failures come from the same logits,
        # equal to `mnistcnn eval`'s even if last.pt is rewritten meanwhile
        twin = model_from_checkpoint(self.ckpt, self.path).to(next(self.model.parameters()).device)
        p = predict_test_set(self.ckpt, twin, self.data_dir, log=_log.info)
        metrics = p["metrics"]
        wrong = np.flatnonzero(p["pred"] != p["labels"])
        worst = wrong[np.argsort(-p["conf"][wrong], kind="stable")][:FAILURES]
        failures = [
            {
                "index": int(i),
                "label": int(p["labels"][i]),
                "prediction": int(p["pred"][i]),
                "confidence": round(float(p["conf"][i]), 4),
                "png": png_data_url(p["images"][i]),
            }
            for i in worst
        ]
        keys = ("accuracy", "loss", "per_class", "n", "confusion")
        seen = {k: p[k] for k in ("images", "labels", "pred", "probs")}
        return {
            **{k: metrics[k] for k in keys},
            "misclassified": len(wrong),
            "failures": failures,
            "pass": seen,
        }


class TooBig(MnistcnnError):
    status = 413


def check_size(name: str, path: Path, size: int) -> None:
    """A checkpoint the server will not load: over MAX_FILE on disk, or a zip (torch's format) whose members
    unpack to more than MAX_UNPACKED (a zip bomb: a few MB that torch.load would inflate for seconds)."""
    import zipfile

    if size > MAX_FILE:
        raise TooBig(
            f"checkpoint {name!r} is {size / 2**20:.0f} MiB, over the server's {MAX_FILE >> 20} MiB limit"
        )
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: torch.load (weights_only) refuses it with its own one line
    if unpacked > MAX_UNPACKED:
        raise TooBig(
            f"checkpoint {name!r} unpacks to {unpacked / 2**20:.0f} MiB, over the server's "
            f"{MAX_UNPACKED >> 20} MiB limit (MyNet's is under 1 MiB); it is not a MyNet checkpoint"
        )


class Models:
    """Loaded checkpoints by path; thread-safe. Each checkpoint has its own loading lock: a slow or hostile one
    (`?run=`) holds only the requests for it, never the others'."""

    def __init__(self, device: str = "cpu", data_dir: Path | None = None) -> None:
        self.device, self.data_dir = device, data_dir
        self._loaded: dict[Path, Loaded] = {}
        self._locks: dict[Path, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts only, never held while loading
        self._data: dict[str, tuple] = {}
        self._data_lock = threading.Lock()

    def split(self, train: bool = False):
        """(images uint8 (N, 28, 28), labels int64 (N,)) numpy arrays of the test (or training) set, read once."""
        key = "train" if train else "test"
        with self._data_lock:
            if key not in self._data:
                from mnistcnn import data

                root = data.resolve_data_dir(self.data_dir)
                data.ensure_mnist(root, _log.info)
                images, labels = data.load_split(root, train=train)
                self._data[key] = (images.numpy(), labels.numpy())
            return self._data[key]

    def get(self, name: str, path: Path) -> Loaded:
        try:
            st = path.stat()
        except FileNotFoundError:  # deleted since its run was listed (a run folder removed while serving)
            raise NotFound(f"checkpoint {name!r} is gone (deleted while the server runs)") from None
        stamp = (st.st_mtime_ns, st.st_size)
        key = path.resolve()
        cached = self._loaded.get(key)
        if cached is not None and cached.stamp == stamp:
            return cached
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._loaded.get(key)
            if cached is None or cached.stamp != stamp:
                from mnistcnn.checkpoint import load_model

                check_size(name, path, st.st_size)
                ckpt, model = load_model(path, self.device, needs=None, command="the page")
                cached = Loaded(name, path, stamp, ckpt, model, self.device, self.data_dir, self)
                self._loaded[key] = cached
            return cached
