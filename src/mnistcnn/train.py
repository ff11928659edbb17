"""The training loop: forward, loss, backward, step — on data that lives on the device.

Usage: `result = train(cfg, data_dir="data", run_dir=Path("runs/x"), reporter=PlainReporter())`.
`Trainer` reads like its outline: prepare (data, model, stepper, run folder), then per epoch `run_epoch` and
`end_epoch`, then `finish` (test, last checkpoint, plot). No host sync inside the step: losses and correct
counts accumulate on the device and are read at log time.
"""

from __future__ import annotations

import functools
import math
import random
import time
from pathlib import Path

import torch

from mnistcnn import checkpoint, data, distributed, epochs, kinds, schema
from mnistcnn.checkpoint import Position
from mnistcnn.config import TrainConfig
from mnistcnn.distributed import World
from mnistcnn.engine import resolve_device, resolve_precision, use_channels_last
from mnistcnn.errors import Interrupted, MnistcnnError
from mnistcnn.generative import tasks
from mnistcnn.report import Reporter, Silent
from mnistcnn.resume import StopFlag, agreed_stop, should_stop
from mnistcnn.rundir import RunDir, environment
from mnistcnn.stepper import Stepper, chunk_for, make_optimizer


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    # cudnn.benchmark stays off: measured on an H100 it gains nothing for MyNet, and it makes runs of the same
    # seed differ (the fast recipe landed at 98.86-98.97 % with it, 99.03 % every time without)
    if deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def train(
    cfg: TrainConfig,
    data_dir,
    run_dir: Path,
    reporter: Reporter,
    resume: dict | None = None,
    recipe: str | None = None,
) -> dict:
    """Train the model `cfg.model` names (MyNet by default) per `cfg`, writing the run folder (rank 0 only under torchrun); return the final metrics.

    `resume`: a checkpoint dict to continue from (its run folder is `run_dir`). `recipe`: what `cfg` started
    from, for config.json (`recipes.Source.label`; a resumed run keeps its folder's). Raises Interrupted after
    saving when SIGINT/SIGTERM arrives.
    """
    world, device_name = distributed.setup(cfg.device)
    trainer = None
    try:
        with StopFlag() as stop:
            trainer = Trainer(cfg, world, resolve_device(device_name), reporter, stop)
            trainer.recipe = recipe
            trainer.prepare(data_dir, run_dir, resume)
            for epoch in range(trainer.pos.epoch, cfg.epochs):
                trainer.end_epoch(epoch, *trainer.run_epoch(epoch))
            result = trainer.finish()
            world.barrier()  # leave together: a rank tearing gloo down while rank 0 still wrote files once aborted
        if stop.signum is not None:  # arrived during the last save or the plot: that write completed
            raise Interrupted(stop.signum, run_dir, finished=True)
        return result
    finally:
        if trainer is not None and trainer.run is not None:
            trainer.run.unlock()
        distributed.teardown(world)


class Trainer:
    """One training run. Every rank runs the same code; only rank 0 (`self.run` not None) writes files."""

    def __init__(
        self, cfg: TrainConfig, world: World, device: torch.device, reporter: Reporter, stop
    ) -> None:
        self.cfg, self.world, self.device, self.stop = cfg, world, device, stop
        self.reporter = reporter if world.is_main else Silent()
        self.run: RunDir | None = None
        self.recipe: str | None = None  # what the config started from (config.json's "recipe")
        self.kind = kinds.get(cfg.model)
        self.task = tasks.for_kind(self.kind, cfg, world)
        self.precision = resolve_precision(cfg.precision, device)
        # channels_last was measured faster for MyNet on CPUs; the generative nets use it only when asked ("on")
        self.channels_last = use_channels_last(cfg.channels_last, device) and (
            self.kind.name == "mynet" or cfg.channels_last == "on"
        )
        if world.distributed and cfg.loader != "tensor":
            raise MnistcnnError("--loader torchvision runs in a single process; drop it under torchrun")
        seed_everything(cfg.seed, cfg.deterministic)

    # --- prepare: every check and every load before the first write to the run folder ---

    def prepare(self, data_dir, run_dir: Path, resume: dict | None) -> None:
        self.run_dir, self.resume = run_dir, resume
        if resume is None and self.world.is_main:
            RunDir.check_new(run_dir)  # fail fast; checked again once the folder is locked
        source = self._load_data(data_dir)
        self.model = self._build_model(resume)
        self.stepper = self._build_stepper(resume)
        n = len(self.train.x)
        self.steps_per_epoch = math.ceil(n / self.cfg.batch_size)
        if resume is not None:
            schema.check_steps(resume, self.steps_per_epoch)
        total = self.cfg.epochs * self.steps_per_epoch
        self.lrs = [epochs.lr_at(self.cfg, s, total, self.steps_per_epoch) for s in range(total)]
        self.lr_table = torch.tensor(self.lrs, device=self.device) if self.stepper.graphs else None
        self.pos = Position.of(resume)
        self.history, self.best, self.step = self.pos.history, self.pos.best, self.pos.step
        self.run = self._open_run(source) if self.world.is_main else None

    def _load_data(self, data_dir) -> str:
        cfg, world = self.cfg, self.world
        self.root = data.resolve_data_dir(data_dir)
        source = data.ensure_mnist(self.root, self.reporter.log) if world.is_main else ""
        world.barrier()  # one download; the other ranks wait, then verify what rank 0 fetched
        if not world.is_main:
            source = data.ensure_mnist(self.root)
        train, val = data.split_train(
            *data.load_split(self.root, train=True), cfg.val_split, cfg.train_limit, cfg.batch_size
        )
        resident = functools.partial(
            epochs.Resident.of,
            device=self.device,
            mean_std=cfg.normalization(),
            channels_last=self.channels_last,
        )
        self.train, self.val = resident(train), resident(val) if val else None
        self.test = resident(data.load_split(self.root, train=False))
        return source

    def _build_model(self, resume: dict | None) -> torch.nn.Module:
        self.model_args = self.kind.args_of(self.cfg.to_dict())
        model = self.kind.build(self.model_args).to(self.device)  # weights drawn on the CPU from the seed
        if resume is not None:
            model.load_state_dict(resume["model"])
        elif hasattr(model, "init_from"):  # the autoencoders start their output bias at the mean image
            model.init_from(self.train.x)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def _build_stepper(self, resume: dict | None) -> Stepper:
        cfg, device = self.cfg, self.device
        forward = self.task.wrap(
            self.model,
            distributed.wrap(torch.compile(self.model) if cfg.compile else self.model, self.world, device)
            if self.kind.name != "gan"  # a GAN wraps its two networks apart (tasks.GANTask.wrap)
            else None,
        )
        local_batch = len(self.world.shard(torch.arange(cfg.batch_size)))
        scale = self.world.size / cfg.batch_size if self.world.distributed else None

        def make(graphs: bool) -> Stepper:
            optimizer = make_optimizer(
                cfg, self.kind.param_groups(self.model, cfg), device, capturable=graphs
            )
            if resume is not None:
                checkpoint.load_optimizer_state(optimizer, resume["optimizer"])
            x, y = self.train.x, self.train.y
            chunk = chunk_for(local_batch, device, len(x) // cfg.batch_size)  # short runs: short graphs
            task = self.task if self.task.train_on is not None else None
            return Stepper(
                forward, optimizer, x, y, device, self.precision, local_batch, graphs, scale, chunk, task=task
            )

        graphs = (  # MyNet's step only: the generative kinds draw noise every step
            cfg.cuda_graphs
            and device.type == "cuda"
            and cfg.loader == "tensor"
            and not cfg.deterministic
            and self.kind.name == "mynet"
        )
        try:
            return make(graphs)
        except RuntimeError as e:  # capture is picky about drivers and ops; the eager step computes the same
            self.reporter.log(
                f"CUDA graph capture failed ({str(e).splitlines()[0][:80]}); continuing without"
            )
            return make(False)

    def _open_run(self, source: str) -> RunDir:
        """Lock the folder (and, on resume, check its identity): the first write comes after every check."""
        if self.resume is None:
            run = RunDir.create(self.run_dir, self.recipe)
        else:
            run = RunDir.reopen(self.run_dir, self.resume)
        self.run = run
        env = {**environment(self.device, self.precision, source), "world_size": self.world.size}
        run.write_config(self.cfg.to_dict())
        run.write_json("env.json", env)
        what = "resuming" if self.resume else "training"
        self.reporter.log(
            f"{what} on {self.device} ({self.precision}, world size {self.world.size}), "
            f"{len(self.train.x)} images, run folder {run.path}"
        )
        return run

    # --- one epoch ---

    def run_epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Train one epoch (or its rest, after a resume); return (per-batch losses, the kind's per-epoch sums
        — MyNet: the correct count —, seconds)."""
        cfg, pos = self.cfg, self.pos
        begin = pos.batch if epoch == pos.epoch else 0
        self.reporter.start_epoch(epoch + 1, cfg.epochs, self.steps_per_epoch)
        width = len(self.task.batch_keys)
        shape = (self.steps_per_epoch,) if width == 1 else (self.steps_per_epoch, width)
        losses = torch.zeros(shape, device=self.device)
        if self.kind.name == "mynet":
            correct = torch.zeros((), dtype=torch.long, device=self.device)
        else:
            correct = torch.zeros(len(self.task.stat_keys), device=self.device)
        earlier = 0.0  # seconds spent on this epoch before an interruption
        if begin:
            losses[:begin] = torch.tensor(pos.losses, device=self.device)
            if self.world.is_main:  # summed over ranks at the end of the epoch
                correct += torch.tensor(pos.sums, device=self.device).to(correct.dtype).reshape(correct.shape)
            earlier = pos.seconds
        chunks = self._chunks(epoch, begin)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # epoch time = GPU time: nothing queued from before counts
        t0 = last_sync = time.perf_counter()
        i = logged = begin
        for calls, (loss_k, ok) in enumerate(chunks, 1):
            losses[i : i + len(loss_k)] = loss_k
            correct += ok
            i, self.step = i + len(loss_k), self.step + len(loss_k)
            stopping = should_stop(self.stop, self.world, calls)
            since = time.perf_counter() - last_sync
            due = (i - logged >= cfg.log_every) if cfg.log_every else since > 0.5
            if due or stopping or i == self.steps_per_epoch:
                last_sync = self._log_batches(
                    epoch, losses[logged:i], min(len(self.train.x), i * cfg.batch_size), i, t0
                )
                logged = i
            if stopping and i < self.steps_per_epoch:
                self._stop_mid_epoch(epoch, losses, correct, i, begin, earlier + last_sync - t0)
        return losses, correct, earlier + time.perf_counter() - t0

    def _chunks(self, epoch: int, begin: int):
        cfg = self.cfg
        order = data.epoch_permutation(len(self.train.x), cfg.seed, epoch, cfg.shuffle)
        if cfg.loader == "tensor":
            perm = order.to(self.device)
            return epochs.resident_epoch(
                self.stepper, perm, cfg.batch_size, self.step, self.lrs, self.lr_table, self.world, begin
            )
        return epochs.torchvision_epoch(
            self.stepper, self.root, order, cfg, self.lrs[self.step :], self.channels_last, begin, self.step
        )

    def _log_batches(self, epoch: int, pending: torch.Tensor, images: int, done: int, t0: float) -> float:
        """Read the pending batch losses (the one host sync, at log time), check them, log them."""
        values = pending.tolist()
        first = self.step - len(values) + 1
        _check_finite(values, first, self.run)
        if not self.world.distributed:  # data-parallel batch losses are complete only after the reduce
            _append_batches(self.run, epoch, first, values, self.task.batch_keys)
        now = time.perf_counter()
        main = [v[0] if isinstance(v, list) else v for v in values]
        self.reporter.advance(done, sum(main) / len(main), images / (now - t0))
        return now

    def _stop_mid_epoch(self, epoch, losses, correct, i: int, begin: int, seconds: float):
        """Every rank agreed to stop after batch `i`: save where the run stands and raise Interrupted."""
        self.world.all_reduce_(losses, average=True)
        self.world.all_reduce_(correct)
        sums = correct.tolist() if correct.dim() else [int(correct)]
        partial = {"losses": losses[:i].tolist(), "sums": sums, "seconds": seconds}
        if self.run is not None:
            if self.world.distributed:
                keys = self.task.batch_keys
                _append_batches(self.run, epoch, self.step - i + begin + 1, partial["losses"][begin:], keys)
            self._save("last.pt", epoch, i, partial)
        self.world.barrier()  # leave after rank 0 has saved
        raise Interrupted(self.stop.signum, self.run_dir)

    def end_epoch(self, epoch: int, losses: torch.Tensor, correct: torch.Tensor, seconds: float) -> None:
        """Reduce, record, validate, checkpoint (last.pt; best.pt when validation improved; with --keep-epochs
        epochs/epoch-NNN.pt)."""
        cfg, n = self.cfg, len(self.train.x)
        begin = self.pos.batch if epoch == self.pos.epoch else 0
        self.world.all_reduce_(losses, average=True)
        self.world.all_reduce_(correct)
        per_batch = losses.tolist()
        keys = self.task.batch_keys
        if self.world.distributed and self.run is not None:
            _append_batches(
                self.run, epoch, self.step - self.steps_per_epoch + begin + 1, per_batch[begin:], keys
            )
        sizes = [min(cfg.batch_size, n - k * cfg.batch_size) for k in range(self.steps_per_epoch)]
        columns = [per_batch] if len(keys) == 1 else [list(c) for c in zip(*per_batch)]
        means = {f"train_{k}": sum(v * s for v, s in zip(col, sizes)) / n for k, col in zip(keys, columns)}
        sums = correct.tolist() if correct.dim() else [correct.item()]
        record = {
            "type": "epoch",
            "epoch": epoch + 1,
            **means,
            **self.task.epoch_fields(sums, n),
            "lr": self.lrs[self.step - 1],
            "seconds": seconds,
            "images_per_s": n / seconds,
        }
        if self.val is not None:
            record.update(self.task.record("val", self._evaluate(self.val)))
        self.history.append(record)
        self.reporter.end_epoch(record)
        score = self.task.score(record, epoch)  # higher is better; no validation split: the newest epoch
        improved, self.best = score > self.best, max(self.best, score)
        if self.run is not None:
            self.run.append(record)
            self._save("last.pt", epoch + 1)
            if improved:
                self._save("best.pt", epoch + 1)
            if cfg.keep_epochs:
                self._save_snapshot(epoch + 1)
            if self.kind.name == "gan":
                from mnistcnn.generative import sample

                sample.write_progress(self.model, self.run.path, epoch + 1)
        if self.stop.signum is not None and epoch + 1 < cfg.epochs:  # a signal in the epoch's last chunk
            raise Interrupted(self.stop.signum, self.run_dir)

    # --- the end ---

    def finish(self) -> dict:
        """Test-set metrics, the final checkpoint and the loss plot; returns what the CLI prints.

        A signal during the evaluation stops before any write (last.pt already holds every epoch); during the
        last save or the plot, that write completes and the rest is skipped (train() then exits 128 + signal)."""
        test = self._evaluate(self.test)
        if agreed_stop(self.stop, self.world):
            raise Interrupted(self.stop.signum, self.run_dir, finished=True)
        final = {
            "type": "test",
            "epoch": self.cfg.epochs,
            **self.task.record("test", test),
            "train_seconds": sum(r["seconds"] for r in self.history if r["type"] == "epoch"),
        }
        self.history.append(final)
        result = {
            **final,
            "run_dir": str(self.run_dir),
            "device": str(self.device),
            "precision": self.precision,
            "is_main": self.world.is_main,
            "model": self.kind.name,
        }
        if self.run is not None:
            self.run.append(final)
            self._save("last.pt", self.cfg.epochs)
            if self.stop.signum is None:
                from mnistcnn.plots import plot_loss

                plot_loss(self.run.metrics_path, self.run.path / "loss.png")
        return result

    def _evaluate(self, split: epochs.Resident) -> dict:
        # always fp32, whatever the training precision: the figure belongs to the checkpoint, and `mnistcnn eval`
        # (fp32, same layout and batch size) must print the same one for it; bf16 logits moved it by 0.1 pt
        return self.task.evaluate(self.model, split.x, split.y, self.cfg.eval_batch_size, self.world)

    def _save(self, name: str, epoch: int, batch: int = 0, partial: dict | None = None) -> None:
        state = checkpoint.build(
            self.model,
            self.stepper.optimizer,
            self.cfg,
            epoch,
            batch,
            self.step,
            self.history,
            self.best,
            partial,
            run_id=self.run.run_id,
            kind=self.kind.name,
            model_args=self.model_args,
        )
        checkpoint.save(self.run.path / name, state)

    def _save_snapshot(self, epoch: int) -> None:
        """--keep-epochs: the weights after `epoch` (no optimizer state), replaced when a resume re-does it."""
        state = checkpoint.snapshot(
            self.model,
            self.cfg,
            epoch,
            self.step,
            self.history,
            run_id=self.run.run_id,
            kind=self.kind.name,
            model_args=self.model_args,
        )
        checkpoint.save(self.run.snapshot_path(epoch), state)


def _check_finite(values: list, first_step: int, run) -> None:
    """`values`: one loss per step, or one list of losses per step (a GAN's D and G)."""
    bad = next(
        (j for j, v in enumerate(values) if not all(map(math.isfinite, v if isinstance(v, list) else [v]))),
        None,
    )
    if bad is not None:
        where = (
            f"; last good checkpoint: {run.path / 'last.pt'}"
            if run and (run.path / "last.pt").exists()
            else ""
        )
        raise MnistcnnError(
            f"the loss became {_worst(values[bad])} at step {first_step + bad}; training stopped{where}. "
            "Try a lower --lr"
        )


def _worst(v) -> float:
    return next((x for x in v if not math.isfinite(x)), v[0]) if isinstance(v, list) else v


def _append_batches(run: RunDir, epoch: int, first_step: int, values: list, keys=("loss",)) -> None:
    """Batch records; `keys` name each step's losses when a step has several (a GAN: loss = D's, g_loss)."""
    run.append(
        *(
            {"type": "batch", "epoch": epoch + 1, "step": first_step + j}
            | (dict(zip(keys, v)) if isinstance(v, list) else {"loss": v})
            for j, v in enumerate(values)
        )
    )
