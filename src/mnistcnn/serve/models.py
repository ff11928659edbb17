"""Checkpoints the server has loaded, each once, and its expensive views (test-set metrics, failures) computed
on first request and kept.

Usage: `models = Models("cpu", data_dir)`; `m = models.get(path)`; `m.evaluation()`.
A checkpoint file that changed on disk (a run still training) is loaded again on its next use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from mnistcnn.serve.runs import NotFound

FAILURES = 36  # the gallery's size, as `mnistcnn failures`


@dataclass
class Loaded:
    name: str
    path: Path
    stamp: tuple[int, int]  # (mtime_ns, size) when loaded
    ckpt: dict
    model: object
    device: str
    data_dir: Path | None
    _evaluation: dict | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> dict:
        """Summary rows, parameter count, the config it was trained with and conv1's kernels: cheap."""
        from mnistcnn.explain import summary
        from mnistcnn.model import MyNet

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
        with self._lock:  # two first requests wait for one computation
            if self._evaluation is None:
                self._evaluation = self._evaluate()
            return self._evaluation

    def _evaluate(self) -> dict:
        import numpy as np

        from mnistcnn.checkpoint import model_from_checkpoint
        from mnistcnn.explain import predict_test_set
        from mnistcnn.serve.pictures import png_data_url

        # one pass, on a private copy of exactly the weights this entry serves (the pass may change its memory
        # format; the served model keeps answering meanwhile): accuracy and failures come from the same logits,
        # equal to `mnistcnn eval`'s even if last.pt is rewritten meanwhile
        twin = model_from_checkpoint(self.ckpt, self.path).to(next(self.model.parameters()).device)
        p = predict_test_set(self.ckpt, twin, self.data_dir)
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
        return {**{k: metrics[k] for k in keys}, "misclassified": len(wrong), "failures": failures}


class Models:
    """Loaded checkpoints by path; thread-safe."""

    def __init__(self, device: str = "cpu", data_dir: Path | None = None) -> None:
        self.device, self.data_dir = device, data_dir
        self._loaded: dict[Path, Loaded] = {}
        self._lock = threading.Lock()

    def get(self, name: str, path: Path) -> Loaded:
        try:
            st = path.stat()
        except FileNotFoundError:  # deleted since its run was listed (a run folder removed while serving)
            raise NotFound(f"checkpoint {name!r} is gone (deleted while the server runs)") from None
        stamp = (st.st_mtime_ns, st.st_size)
        key = path.resolve()
        with self._lock:
            cached = self._loaded.get(key)
            if cached is None or cached.stamp != stamp:
                from mnistcnn.checkpoint import load_model

                ckpt, model = load_model(path, self.device)
                cached = Loaded(name, path, stamp, ckpt, model, self.device, self.data_dir)
                self._loaded[key] = cached
            return cached
