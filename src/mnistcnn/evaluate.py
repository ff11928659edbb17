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
    return metrics_of(predict_logits(model, images, batch_size, precision), labels, world)


def metrics_of(logits: torch.Tensor, labels: torch.Tensor, world: World = ONE_PROCESS) -> dict:
    """Loss, accuracy, per-class accuracy and confusion matrix of (N, 10) float32 logits."""
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


def on_test_set(ckpt: dict, model, data_dir=None, batch_size: int | None = None, log=lambda _: None) -> dict:
    """One pass of a checkpoint's model over the verified test set, as training evaluated it: fp32, inputs
    normalised the way it was trained, the memory format training used (channels_last on a CPU; `model`, the
    caller's own, is converted in place) and by default its eval_batch_size. The same kernels run, so on the
    machine that trained it the figures equal those `train` printed and recorded, whatever precision it trained
    in. Returns {"images" (uint8), "labels", "logits" (N, 10), "metrics"}."""
    from mnistcnn import checkpoint, data
    from mnistcnn.engine import use_channels_last
    from mnistcnn.errors import MnistcnnError

    if batch_size is None:
        batch_size = int(ckpt["config"].get("eval_batch_size", 1000))
    if batch_size <= 0:
        raise MnistcnnError(f"--batch-size must be > 0; got {batch_size}")
    images, labels = data.read_test_set(data_dir, log)
    device = next(model.parameters()).device
    x = data.to_device(images, device, *checkpoint.normalization(ckpt))
    if use_channels_last(ckpt["config"].get("channels_last", "auto"), device):
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    logits = predict_logits(model, x, batch_size, "fp32")
    return {"images": images, "labels": labels, "logits": logits, "metrics": metrics_of(logits, labels)}


def evaluate_checkpoint(
    path, data_dir=None, device: str = "auto", batch_size: int | None = None, log=lambda _: None
) -> dict:
    """Test-set metrics of a saved checkpoint (see `on_test_set`)."""
    from mnistcnn import checkpoint
    from mnistcnn.errors import MnistcnnError

    if batch_size is not None and batch_size <= 0:  # before any file work
        raise MnistcnnError(f"--batch-size must be > 0; got {batch_size}")
    ckpt, model = checkpoint.load_model(path, device)
    return on_test_set(ckpt, model, data_dir, batch_size, log)["metrics"]
