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

from mnistcnn import checkpoint, data, distributed
from mnistcnn.config import TrainConfig
from mnistcnn.distributed import World
from mnistcnn.engine import resolve_device, resolve_precision, use_channels_last
from mnistcnn.errors import Interrupted, MnistcnnError
from mnistcnn.evaluate import evaluate
from mnistcnn.model import MyNet
from mnistcnn.resume import Position, StopFlag, checkpoint_state, load_optimizer_state, should_stop
from mnistcnn.rundir import RunDir, environment
from mnistcnn.stepper import Stepper, make_optimizer, set_lr


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


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    # cudnn.benchmark stays off: measured on an H100 it gains nothing for MyNet, and it makes runs of the same
    # seed differ (the fast recipe landed at 98.86-98.97 % with it, 99.03 % every time without)
    if deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


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


class _Silent:
    """The reporter of ranks other than 0: they train, rank 0 talks."""

    def log(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, steps_done: int, loss: float, images_per_s: float) -> None: ...
    def end_epoch(self, record: dict) -> None: ...


def train(cfg: TrainConfig, data_dir, run_dir: Path, reporter: Reporter, resume: dict | None = None) -> dict:
    """Train MyNet per `cfg`, writing the run folder (rank 0 only under torchrun); return the final metrics.

    `resume`: a checkpoint dict to continue from (its run folder is `run_dir`). Raises Interrupted after saving
    when SIGINT/SIGTERM arrives.
    """
    world, device_name = distributed.setup(cfg.device)
    try:
        with StopFlag() as stop:
            quiet = reporter if world.is_main else _Silent()
            result = _train(cfg, data_dir, run_dir, quiet, world, device_name, resume, stop)
        world.barrier()  # leave together: a rank tearing gloo down while rank 0 still wrote files once aborted
        return result
    finally:
        distributed.teardown(world)


def _train(cfg, data_dir, run_dir: Path, reporter: Reporter, world, device_name: str, resume, stop) -> dict:
    device = resolve_device(device_name)
    precision = resolve_precision(cfg.precision, device)
    seed_everything(cfg.seed, cfg.deterministic)
    root = data.resolve_data_dir(data_dir)
    if world.is_main:  # one download; the other ranks wait, then verify what rank 0 fetched
        source = data.ensure_mnist(root, reporter.log)
    world.barrier()
    if not world.is_main:
        source = data.ensure_mnist(root)
    train_split, val_split = data.split_train(
        *data.load_split(root, train=True), cfg.val_split, cfg.train_limit
    )
    test_split = data.load_split(root, train=False)
    run = None
    if world.is_main:  # after every input check, so a mistake leaves no half-made run folder
        run = RunDir.create(run_dir) if resume is None else RunDir.reopen(run_dir, resume)
    mean, std = cfg.normalization()
    channels_last = use_channels_last(cfg.channels_last, device)
    train_data = Resident.of(train_split, device, mean, std, channels_last)
    val_data = Resident.of(val_split, device, mean, std, channels_last) if val_split else None
    test_data = Resident.of(test_split, device, mean, std, channels_last)

    model = MyNet(cfg.activation).to(device)  # weights drawn on the CPU from the seed: same on every device
    if resume is not None:
        model.load_state_dict(resume["model"])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    graphs = cfg.cuda_graphs and device.type == "cuda" and cfg.loader == "tensor" and not cfg.deterministic
    if world.distributed and cfg.loader != "tensor":
        raise MnistcnnError("--loader torchvision runs in a single process; drop it under torchrun")
    forward = distributed.wrap(torch.compile(model) if cfg.compile else model, world, device)

    if run is not None:
        run.write_json("config.json", cfg.to_dict())
        run.write_json("env.json", {**environment(device, precision, source), "world_size": world.size})
        what = "resuming" if resume else "training"
        reporter.log(f"{what} on {device} ({precision}, world size {world.size}), {len(train_data.x)} images, "
                     f"run folder {run.path}")  # fmt: skip

    n = len(train_data.x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    local_batch = len(world.shard(torch.arange(cfg.batch_size)))
    scale = world.size / cfg.batch_size if world.distributed else None

    def make_stepper(graphs: bool) -> Stepper:
        optimizer = make_optimizer(cfg, model.parameters(), device, capturable=graphs)
        if resume is not None:
            load_optimizer_state(optimizer, resume["optimizer"])
        return Stepper(
            forward, optimizer, train_data.x, train_data.y, device, precision, local_batch, graphs, scale
        )

    try:
        stepper = make_stepper(graphs)
    except RuntimeError as e:  # capture is picky about drivers and ops; the eager step computes the same
        reporter.log(f"CUDA graph capture failed ({str(e).splitlines()[0][:80]}); continuing without graphs")
        stepper = make_stepper(False)
    optimizer = stepper.optimizer
    lrs = [lr_at(cfg, s, total_steps, steps_per_epoch) for s in range(total_steps)]
    lr_table = torch.tensor(lrs, device=device) if stepper.graphs else None
    pos = Position.of(resume)
    history, best_acc, step = pos.history, pos.best, pos.step
    for epoch in range(pos.epoch, cfg.epochs):
        begin = pos.batch if epoch == pos.epoch else 0
        order = data.epoch_permutation(n, cfg.seed, epoch, cfg.shuffle)
        reporter.start_epoch(epoch + 1, cfg.epochs, steps_per_epoch)
        losses = torch.zeros(steps_per_epoch, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        earlier = 0.0  # seconds spent on this epoch before an interruption
        if begin:
            losses[:begin] = torch.tensor(pos.losses, device=device)
            correct += pos.correct if world.is_main else 0  # summed over ranks at the end of the epoch
            earlier = pos.seconds
        if cfg.loader == "tensor":
            chunks = _resident_epoch(
                stepper, order.to(device), cfg.batch_size, step, lrs, lr_table, world, begin
            )
        else:
            chunks = _torchvision_epoch(stepper, root, order, cfg, lrs[step:], channels_last, begin)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # epoch time = GPU time: nothing queued from before counts
        t0 = last_sync = time.perf_counter()
        i = logged = begin
        for calls, (loss_k, ok) in enumerate(chunks, 1):
            losses[i : i + len(loss_k)] = loss_k
            correct += ok
            i += len(loss_k)
            step += len(loss_k)
            stopping = should_stop(stop, world, calls)
            due = (i - logged >= cfg.log_every) if cfg.log_every else (time.perf_counter() - last_sync > 0.5)
            if due or stopping or i == steps_per_epoch:
                values = losses[logged:i].tolist()  # the one host sync, at log time
                _check_finite(values, step - len(values) + 1, run)
                if not world.distributed:  # data-parallel batch losses are complete only after the reduce
                    _append_batches(run, epoch, step - len(values) + 1, values)
                logged, last_sync = i, time.perf_counter()
                reporter.advance(i, sum(values) / len(values), min(n, i * cfg.batch_size) / (last_sync - t0))
            if stopping and i < steps_per_epoch:
                world.all_reduce_(losses, average=True)
                world.all_reduce_(correct)
                partial = {
                    "losses": losses[:i].tolist(),
                    "correct": int(correct),
                    "seconds": earlier + last_sync - t0,
                }
                if run is not None:
                    if world.distributed:
                        _append_batches(run, epoch, step - i + begin + 1, partial["losses"][begin:])
                    state = checkpoint_state(
                        model, optimizer, cfg, epoch, i, step, history, best_acc, partial
                    )
                    checkpoint.save(run.path / "last.pt", state)
                world.barrier()  # every rank agreed to stop here (should_stop): leave after rank 0 has saved
                raise Interrupted(stop.signum, run_dir)
        world.all_reduce_(losses, average=True)
        world.all_reduce_(correct)
        seconds = earlier + time.perf_counter() - t0
        per_batch = losses.tolist()
        if world.distributed and run is not None:
            _append_batches(run, epoch, step - steps_per_epoch + begin + 1, per_batch[begin:])
        sizes = [min(cfg.batch_size, n - k * cfg.batch_size) for k in range(steps_per_epoch)]
        record = {
            "type": "epoch",
            "epoch": epoch + 1,
            "train_loss": sum(v * s for v, s in zip(per_batch, sizes)) / n,
            "train_acc": correct.item() / n,
            "lr": lrs[step - 1],
            "seconds": seconds,
            "images_per_s": n / seconds,
        }
        if val_data is not None:
            val = evaluate(model, val_data.x, val_data.y, cfg.eval_batch_size, precision, world)
            record.update(val_loss=val["loss"], val_acc=val["accuracy"])
        history.append(record)
        reporter.end_epoch(record)
        score = record.get("val_acc", epoch)  # without a validation split the newest epoch counts as best
        improved = score > best_acc
        best_acc = max(best_acc, score)
        if run is not None:
            run.append(record)
            state = checkpoint_state(model, optimizer, cfg, epoch + 1, 0, step, history, best_acc)
            checkpoint.save(run.path / "last.pt", state)
            if improved:
                checkpoint.save(run.path / "best.pt", state)
        if stop.signum is not None and epoch + 1 < cfg.epochs:  # a signal in the epoch's last chunk
            raise Interrupted(stop.signum, run_dir)

    test = evaluate(model, test_data.x, test_data.y, cfg.eval_batch_size, precision, world)
    final = {"type": "test", "epoch": cfg.epochs, "test_loss": test["loss"], "test_acc": test["accuracy"],
             "per_class": test["per_class"], "n": test["n"],
             "train_seconds": sum(r["seconds"] for r in history if r["type"] == "epoch")}  # fmt: skip
    history.append(final)
    result = {**final, "run_dir": str(run_dir), "device": str(device), "precision": precision,
              "is_main": world.is_main}  # fmt: skip
    if run is None:
        return result
    run.append(final)
    state = checkpoint_state(model, optimizer, cfg, cfg.epochs, 0, step, history, best_acc)
    checkpoint.save(run.path / "last.pt", state)
    from mnistcnn.plots import plot_loss

    plot_loss(run.metrics_path, run.path / "loss.png")
    return result


def _check_finite(values: list[float], first_step: int, run) -> None:
    bad = next((j for j, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        where = (
            f"; last good checkpoint: {run.path / 'last.pt'}"
            if run and (run.path / "last.pt").exists()
            else ""
        )
        raise MnistcnnError(
            f"the loss became {values[bad]} at step {first_step + bad}; training stopped{where}. "
            "Try a lower --lr"
        )


def _append_batches(run: RunDir, epoch: int, first_step: int, values: list[float]) -> None:
    run.append(
        *(
            {"type": "batch", "epoch": epoch + 1, "step": first_step + j, "loss": v}
            for j, v in enumerate(values)
        )
    )


def _resident_epoch(stepper: Stepper, perm, bs: int, step: int, lrs, lr_table, world: World, begin: int = 0):
    """Yield (losses, correct) per chunk of steps over one epoch of the resident data.

    `bs` is the global batch; under torchrun each rank takes its shard of every global batch.
    """
    n = len(perm)
    full, i = n // bs, begin
    while i < full:
        k = stepper.chunk if i + stepper.chunk <= full else 1
        block = perm[i * bs : (i + k) * bs]
        if world.distributed:
            block = block.view(k, bs).tensor_split(world.size, dim=1)[world.rank].reshape(-1)
        s = step + i - begin
        yield stepper.steps(block, lrs[s : s + k], lr_table[s : s + k] if lr_table is not None else None)
        i += k
    if n % bs and i == full:  # the last, smaller batch is trained on, never dropped
        last = world.shard(perm[full * bs :])
        set_lr(stepper.optimizer, lrs[step + full - begin])
        scale = world.size / (n - full * bs) if world.distributed else None
        loss, ok = stepper.train_on(stepper.x[last], stepper.y[last], scale)
        yield loss[None], ok


def _torchvision_epoch(
    stepper: Stepper, root, order, cfg: TrainConfig, lrs, channels_last: bool, begin: int = 0
):
    """The lecture's DataLoader path: batches arrive as CPU tensors, one step each."""
    rest = order[begin * cfg.batch_size :]
    for j, (xb, yb) in enumerate(data.torchvision_batches(root, rest, cfg.batch_size, *cfg.normalization())):
        xb, yb = xb.to(stepper.device, non_blocking=True), yb.to(stepper.device, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        set_lr(stepper.optimizer, lrs[j])
        loss, ok = stepper.train_on(xb, yb)
        yield loss[None], ok
