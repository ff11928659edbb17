"""Metrics of a model on a labelled set: loss, accuracy, per-class accuracy, confusion matrix.

Usage: `metrics = evaluate(model, images, labels)` with images already normalised on the model's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mnistcnn.distributed import World
from mnistcnn.engine import autocast

ONE_PROCESS = World.single()  # rank 0 of a world of 1: nothing to shard or reduce


@torch.inference_mode()
def predict_logits(
    model, images: torch.Tensor, batch_size: int = 1000, precision: str = "fp32"
) -> torch.Tensor:
    """Logits (N, 10) in float32, computed in large batches."""
    was_training = model.training
    model.eval()
    with autocast(images.device, precision):
        out = [model(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


@torch.inference_mode()
def evaluate(
    model, images, labels, batch_size: int = 1000, precision: str = "fp32", world: World = ONE_PROCESS
) -> dict:
    """Loss summed over the set then divided by its size (pytorch/examples' test()), accuracy, per class.

    Under torchrun (`world`), each rank evaluates its shard and the sums are all-reduced.
    """
    if world.distributed:
        images, labels = world.shard(images), world.shard(labels)
    logits = predict_logits(model, images, batch_size, precision)
    labels = labels.to(logits.device)
    loss_sum = F.cross_entropy(logits, labels, reduction="sum")
    confusion = torch.bincount(labels * 10 + logits.argmax(1), minlength=100).reshape(10, 10)
    world.all_reduce_(loss_sum, confusion)  # a no-op in a single process
    loss_sum, confusion = loss_sum.cpu(), confusion.cpu()  # one host sync for everything
    n = int(confusion.sum())
    per_class = confusion.diagonal() / confusion.sum(1).clamp(min=1)
    return {
        "accuracy": int(confusion.diagonal().sum()) / n,
        "loss": loss_sum.item() / n,
        "per_class": [round(v, 6) for v in per_class.tolist()],
        "n": n,
        "confusion": confusion.tolist(),
    }


def checkpoint_test_set(ckpt: dict, model, data_dir=None, log=lambda _: None):
    """The verified test set as the checkpoint's model sees it: (images uint8, labels, inputs normalised the way
    it was trained, on the model's device)."""
    from mnistcnn import checkpoint, data

    images, labels = data.read_test_set(data_dir, log)
    x = data.to_device(images, next(model.parameters()).device, *checkpoint.normalization(ckpt))
    return images, labels, x


def evaluate_checkpoint(
    path, data_dir=None, device: str = "auto", batch_size: int = 1000, log=lambda _: None
) -> dict:
    """Test-set metrics of a saved checkpoint, preprocessing images the way it was trained."""
    from mnistcnn import checkpoint
    from mnistcnn.errors import MnistcnnError

    if batch_size <= 0:
        raise MnistcnnError(f"--batch-size must be > 0; got {batch_size}")
    ckpt, model = checkpoint.load_model(path, device)
    _, labels, x = checkpoint_test_set(ckpt, model, data_dir, log)
    return evaluate(model, x, labels.to(x.device), batch_size)
