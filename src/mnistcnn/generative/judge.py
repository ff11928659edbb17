"""The lecture's classifier judges the generators: MyNet's features and predictions measure what they make.

Usage: `judge = Judge.load("runs/R/last.pt")`; `feats, probs = judge.look(digits_uint8)`;
`frechet(feats_a, feats_b)`; `report(kind, module, judge, test_images, test_labels, train_images)`.

FD is the Fréchet distance between two sets of MyNet's 2304-d flatten features (after both conv blocks), each
set modelled as a Gaussian: |mu_a - mu_b|² + tr(Ca + Cb - 2 (Ca^½ Cb Ca^½)^½). `fd_floor` is the same distance
between 10,000 real training images and the 10,000 test images: what a perfect generator would score.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

N_SAMPLES = 10_000


class Judge:
    def __init__(self, ckpt: dict, model, path) -> None:
        self.ckpt, self.model, self.path = ckpt, model, path

    @classmethod
    def load(cls, path, device: str = "cpu") -> Judge:
        from mnistcnn.checkpoint import load_model

        ckpt, model = load_model(path, device, needs="mynet", command="--judge")
        return cls(ckpt, model, path)

    def look(self, digits: np.ndarray, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, 28, 28) or float [0, 1] digits → (float64 features (N, 2304), probabilities (N, 10))."""
        feats, probs = features_and_probs(self.ckpt, self.model, digits, batch)
        return feats.double(), probs


@torch.inference_mode()
def features_and_probs(
    ckpt: dict, model, digits: np.ndarray, batch: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """What MyNet sees in digits (uint8 (N, 28, 28) or float [0, 1]): its flatten features (the 2,304 values its
    linear layer reads), float32 (N, 2304), and its probabilities (N, 10), both on the CPU."""
    from mnistcnn.predict import model_input

    a = np.asarray(digits)
    a = a.astype(np.float32) / 255 if a.dtype == np.uint8 else a.astype(np.float32)
    feats, probs = [], []
    for i in range(0, len(a), batch):
        x = model_input(ckpt, model, a[i : i + batch])
        f = model.features(x)[1].flatten(1)
        feats.append(f.float().cpu())
        probs.append(torch.softmax(model.fc1(f).float(), 1).cpu())
    return torch.cat(feats), torch.cat(probs)


def gaussian(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = feats.mean(0)
    centred = feats - mu
    return mu, centred.T @ centred / (len(feats) - 1)


def _sqrt_psd(c: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two float64 feature sets (N, D)."""
    mu_a, ca = gaussian(a)
    mu_b, cb = gaussian(b)
    root = _sqrt_psd(ca)
    middle = torch.linalg.eigvalsh(root @ cb @ root).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + ca.trace() + cb.trace() - 2 * middle)


def newest_judge(runs: str | os.PathLike = "runs") -> Path:
    """The newest MyNet run under `runs/` (its last.pt), or one error line saying how to get one."""
    from mnistcnn import checkpoint, kinds
    from mnistcnn.errors import CheckpointError, MnistcnnError

    base = Path(runs)
    found = []
    for folder in base.iterdir() if base.is_dir() else []:
        last = folder / "last.pt"
        try:
            if last.is_file() and kinds.of_checkpoint(checkpoint.load(last)).name == "mynet":
                found.append(last)
        except (CheckpointError, OSError):
            continue
    if not found:
        raise MnistcnnError(
            f"no MyNet run under {base}/ to judge with; train one (mnistcnn train --config fast) or pass --judge CHECKPOINT"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def accuracy(probs: torch.Tensor, labels) -> float:
    return float((probs.argmax(1) == torch.as_tensor(labels)).double().mean())


@torch.inference_mode()
def report(
    kind, module, judge: Judge, test_images, test_labels, train_images, seed: int = 0, log=lambda _: None
) -> dict:
    """The judge's figures for one generative model (see the module docstring): autoencoders `recon_accuracy`
    (the judge reading their reconstructions of the test set); samplers `fd`, `fd_floor`, `judge_confidence`,
    and for conditional kinds `class_fidelity` (the judge's accuracy on samples of asked digits)."""
    from mnistcnn.generative import sample

    out: dict = {"judge": str(judge.path)}
    device = next(module.parameters()).device
    test_feats, test_probs = judge.look(test_images)
    out["judge_test_accuracy"] = accuracy(test_probs, test_labels)
    if kind.family == "autoencoder":
        x = torch.from_numpy(np.asarray(test_images, np.float32) / 255).unsqueeze(1).to(device)
        y = torch.as_tensor(np.asarray(test_labels), device=device)
        recon = []
        for i in range(0, len(x), 1000):
            xb, yb = x[i : i + 1000], y[i : i + 1000] if kind.conditional else None
            z = module.encode(xb, yb)
            z = z[0] if isinstance(z, tuple) else z
            recon.append(sample.decode_pixels(kind, module, z, yb))
        recon_digits = sample.to_uint8(torch.cat(recon))
        out["recon_accuracy"] = accuracy(judge.look(recon_digits)[1], test_labels)
    if kind.samples:
        log(f"judging {N_SAMPLES:,} samples with {judge.path}")
        digits = sample.draw(kind, module, N_SAMPLES, seed)
        feats, probs = judge.look(digits)
        train_feats, _ = judge.look(np.asarray(train_images)[:N_SAMPLES])
        out["fd"] = frechet(feats, test_feats)
        out["fd_floor"] = frechet(train_feats, test_feats)
        out["judge_confidence"] = float(probs.max(1).values.mean())
        if kind.conditional:
            asked = sample.labels_for(N_SAMPLES, None, "cpu")
            out["class_fidelity"] = accuracy(probs, asked)
            out["fidelity_confidence"] = float(probs[torch.arange(N_SAMPLES), asked].mean())
    return out
