"""The training loop: forward, loss, backward, step — on data that lives on the device.

Usage: `result = train(cfg, data_dir="data", run_dir=Path("runs/x"), reporter=PlainReporter())`.
No host sync inside the step: losses and correct counts accumulate on the device and are read at log time.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from mnistcnn import checkpoint, data
from mnistcnn.config import TrainConfig
from mnistcnn.engine import autocast, resolve_device, resolve_precision, use_channels_last
from mnistcnn.evaluate import evaluate
from mnistcnn.model import MyNet
from mnistcnn.rundir import RunDir, environment


class Reporter(Protocol):
    def log(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, steps_done: int, loss: float, images_per_s: float) -> None: ...
    def end_epoch(self, record: dict) -> None: ...


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step `step` (0-based): a pure function, so resume needs only the step."""
    if cfg.schedule == "none":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** ((step // steps_per_epoch) // cfg.step_every)
    # onecycle: linear warm-up from lr/25 to lr, then cosine down to lr/25/1e4 (torch's OneCycleLR shape)
    low, final = cfg.lr / 25, cfg.lr / 25 / 1e4
    warm = int(cfg.warmup * total_steps)
    if step < warm:
        return low + (cfg.lr - low) * step / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return final + (cfg.lr - final) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(cfg: TrainConfig, params, device: torch.device, capturable: bool) -> torch.optim.Optimizer:
    cuda = device.type == "cuda"
    # A tensor LR lets a captured CUDA graph see each step's new value without re-capture.
    lr = torch.tensor(cfg.lr, device=device) if capturable else cfg.lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=cuda or None
        )
    kwargs = {"fused": True, "capturable": capturable} if cuda else {"foreach": True}
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay, **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)  # in place: the captured graph reads this memory
        else:
            group["lr"] = value


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


class Stepper:
    """One optimizer step on a batch given by indices into the resident data; optionally a replayed CUDA graph.

    `step(idx)` returns (loss, correct) as device tensors; nothing here reads them on the host.
    """

    def __init__(self, model, optimizer, x, y, device, precision: str, batch_size: int, graphs: bool) -> None:
        self.model, self.optimizer, self.x, self.y = model, optimizer, x, y
        self.device, self.precision = device, precision
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.graph = None
        if graphs and self.scaler is None:
            self._capture(batch_size)

    def train_on(self, xb: torch.Tensor, yb: torch.Tensor):
        """An eager step on an explicit batch (the torchvision loader's path, and the last partial batch)."""
        with autocast(self.device, self.precision):
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach().float(), (logits.argmax(1) == yb).sum()

    def _capture(self, batch_size: int) -> None:
        # Warm-up steps initialise cuDNN and the optimizer state; they must not change the run, so the
        # weights and optimizer state are restored before the graph is captured.
        model_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.static_idx = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.static_x = self.x[self.static_idx]
        self.static_y = self.y[self.static_idx]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.train_on(self.static_x, self.static_y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(model_state[k])
        for state in self.optimizer.state.values():
            for v in state.values():
                if isinstance(v, torch.Tensor):
                    v.zero_()
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            torch.index_select(self.x, 0, self.static_idx, out=self.static_x)
            torch.index_select(self.y, 0, self.static_idx, out=self.static_y)
            self.static_out = self.train_on(self.static_x, self.static_y)

    def step(self, idx: torch.Tensor):
        if self.graph is not None and len(idx) == len(self.static_idx):
            self.static_idx.copy_(idx)
            self.graph.replay()
            return self.static_out
        # eager: no graph, or the epoch's last, smaller batch (trained on, never dropped)
        return self.train_on(self.x[idx], self.y[idx])


@dataclass
class Resident:
    """A labelled split, normalised, on the device."""

    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def of(cls, split, device, mean, std, channels_last: bool) -> Resident:
        x = data.to_device(split[0], device, mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return cls(x, split[1].to(device))


def train(cfg: TrainConfig, data_dir, run_dir: Path, reporter: Reporter) -> dict:
    """Train MyNet per `cfg`, writing the run folder; return the final metrics."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    seed_everything(cfg.seed, cfg.deterministic)
    root = data.resolve_data_dir(data_dir)
    source = data.ensure_mnist(root, reporter.log)
    train_split, val_split = data.split_train(
        *data.load_split(root, train=True), cfg.val_split, cfg.train_limit
    )
    test_split = data.load_split(root, train=False)
    mean, std = cfg.normalization()
    channels_last = use_channels_last(cfg.channels_last, device)
    train_data = Resident.of(train_split, device, mean, std, channels_last)
    val_data = Resident.of(val_split, device, mean, std, channels_last) if val_split else None
    test_data = Resident.of(test_split, device, mean, std, channels_last)

    model = MyNet(cfg.activation).to(device)  # weights drawn on the CPU from the seed: same on every device
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    graphs = cfg.cuda_graphs and device.type == "cuda" and cfg.loader == "tensor" and not cfg.deterministic
    optimizer = make_optimizer(cfg, model.parameters(), device, capturable=graphs)
    forward = torch.compile(model) if cfg.compile else model

    run = RunDir.create(run_dir)
    run.write_json("config.json", cfg.to_dict())
    run.write_json("env.json", environment(device, precision, source))
    reporter.log(f"training on {device} ({precision}), {len(train_data.x)} images, run folder {run.path}")

    n = len(train_data.x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    try:
        stepper = Stepper(
            forward, optimizer, train_data.x, train_data.y, device, precision, cfg.batch_size, graphs
        )
    except RuntimeError as e:  # capture is picky about drivers and ops; the eager step computes the same
        reporter.log(f"CUDA graph capture failed ({str(e).splitlines()[0][:80]}); continuing without graphs")
        optimizer = make_optimizer(cfg, model.parameters(), device, capturable=False)
        stepper = Stepper(
            forward, optimizer, train_data.x, train_data.y, device, precision, cfg.batch_size, False
        )
    history: list[dict] = []
    best_acc, step = -1.0, 0
    log_every = cfg.log_every
    for epoch in range(cfg.epochs):
        order = data.epoch_permutation(n, cfg.seed, epoch, cfg.shuffle)
        reporter.start_epoch(epoch + 1, cfg.epochs, steps_per_epoch)
        losses = torch.zeros(steps_per_epoch, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        if cfg.loader == "tensor":
            perm = order.to(device)
            batches = (perm[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size))
        else:
            loader = data.torchvision_batches(root, order, cfg.batch_size, mean, std)
            batches = iter(loader)
        t0 = last_sync = time.perf_counter()
        logged = 0
        for i, batch in enumerate(batches):
            set_lr(optimizer, lr_at(cfg, step, total_steps, steps_per_epoch))
            if cfg.loader == "tensor":
                loss, ok = stepper.step(batch)
            else:  # the lecture's DataLoader hands over CPU tensors
                xb, yb = (t.to(device, non_blocking=True) for t in batch)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                loss, ok = stepper.train_on(xb, yb)
            losses[i] = loss
            correct += ok
            step += 1
            now = time.perf_counter()
            due = (i + 1 - logged >= log_every) if log_every else (now - last_sync > 0.5)
            if due or i + 1 == steps_per_epoch:
                values = losses[logged : i + 1].tolist()  # the one host sync, at log time
                run.append(*({"type": "batch", "epoch": epoch + 1, "step": step - len(values) + j + 1, "loss": v}
                             for j, v in enumerate(values)))  # fmt: skip
                logged, last_sync = i + 1, time.perf_counter()
                seen = min(n, (i + 1) * cfg.batch_size)
                reporter.advance(i + 1, sum(values) / len(values), seen / (last_sync - t0))
        seconds = time.perf_counter() - t0
        per_batch = losses.tolist()
        sizes = [min(cfg.batch_size, n - k * cfg.batch_size) for k in range(steps_per_epoch)]
        record = {
            "type": "epoch",
            "epoch": epoch + 1,
            "train_loss": sum(v * s for v, s in zip(per_batch, sizes)) / n,
            "train_acc": correct.item() / n,
            "lr": lr_at(cfg, step - 1, total_steps, steps_per_epoch),
            "seconds": seconds,
            "images_per_s": n / seconds,
        }
        if val_data is not None:
            val = evaluate(forward, val_data.x, val_data.y, cfg.eval_batch_size, precision)
            record.update(val_loss=val["loss"], val_acc=val["accuracy"])
        history.append(record)
        run.append(record)
        reporter.end_epoch(record)
        state = _checkpoint_state(model, optimizer, cfg, epoch + 1, step, history)
        checkpoint.save(run.path / "last.pt", state)
        score = record.get("val_acc", epoch)  # without a validation split the newest epoch counts as best
        if score > best_acc:
            best_acc = score
            checkpoint.save(run.path / "best.pt", state)

    test = evaluate(forward, test_data.x, test_data.y, cfg.eval_batch_size, precision)
    final = {"type": "test", "epoch": cfg.epochs, "test_loss": test["loss"], "test_acc": test["accuracy"],
             "per_class": test["per_class"], "n": test["n"]}  # fmt: skip
    run.append(final)
    history.append(final)
    checkpoint.save(run.path / "last.pt", _checkpoint_state(model, optimizer, cfg, cfg.epochs, step, history))
    from mnistcnn.plots import plot_loss

    plot_loss(run.metrics_path, run.path / "loss.png")
    return {**final, "run_dir": str(run.path), "device": str(device), "precision": precision}


def _checkpoint_state(model, optimizer, cfg: TrainConfig, epoch: int, step: int, history: list[dict]) -> dict:
    opt_state = optimizer.state_dict()
    for group in opt_state["param_groups"]:  # a tensor LR (CUDA graphs) is stored as a plain float
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = group["lr"].item()
    return {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt_state,
        "scheduler": {"name": cfg.schedule, "step": step},
        "config": cfg.to_dict(),
        "epoch": epoch,
        "step": step,
        "metrics": history,
        "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])},
    }
