"""The training step: optimizer steps on device-resident data, K steps per call, CUDA-graph replayable.

Usage: `stepper = Stepper(model, opt, x, y, device, "fp32", batch_size=128, graphs=False)`;
`losses, correct = stepper.steps(idx_block, lrs)` runs len(lrs) optimizer steps on consecutive index slices.

The same `_body` runs eagerly (CPU, MPS, or CUDA without graphs) and is what a CUDA graph captures, so the
CPU tests exercise the logic the GPU replays. Nothing here reads a device value on the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mnistcnn.config import TrainConfig
from mnistcnn.engine import autocast


def make_optimizer(cfg: TrainConfig, params, device: torch.device, capturable: bool) -> torch.optim.Optimizer:
    cuda = device.type == "cuda"
    # A tensor LR lets a captured CUDA graph read each step's value from device memory.
    lr = torch.tensor(cfg.lr, device=device) if capturable else cfg.lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=cuda or None
        )
    # Not fused on the CPU: measured no faster there (interleaved A/B, batch 32 and 128), and its result depends
    # on the thread count (1 vs 2 threads: weights 0.07 apart after 375 steps; foreach: 2e-7).
    kwargs = {"fused": True, "capturable": capturable} if cuda else {"foreach": True}
    betas = (cfg.beta1, cfg.beta2)
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=cfg.weight_decay, **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, value) -> None:
    """Set the LR from a float or a 0-d device tensor; a tensor LR is updated in place (graphs read it).
    A group with an `lr_ratio` (the GAN's discriminator) gets value × ratio."""
    for group in optimizer.param_groups:
        ratio = group.get("lr_ratio", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            v = value * ratio if ratio != 1.0 else value
            group["lr"].copy_(v) if isinstance(v, torch.Tensor) else group["lr"].fill_(v)
        else:
            group["lr"] = float(value) * ratio


def chunk_for(batch_size: int, device: torch.device, steps: int | None = None) -> int:
    """Steps per graph replay on CUDA: enough that launch overhead vanishes at batch 10, bounded in memory,
    and no more than the `steps` (full batches) an epoch has: a longer graph would be captured, never replayed."""
    k = max(1, min(64, 2048 // batch_size)) if device.type == "cuda" else 1
    return max(1, min(k, steps)) if steps is not None else k


class _Graph:
    def __init__(self, stepper: Stepper, k: int) -> None:
        dev = stepper.device
        self.idx = torch.zeros(k * stepper.batch_size, dtype=torch.long, device=dev)
        self.lrs = torch.zeros(k, device=dev)
        self.graph = torch.cuda.CUDAGraph()
        stepper.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.out = stepper._body(self.idx, [self.lrs[j] for j in range(k)])


class Stepper:
    def __init__(
        self,
        model,
        optimizer,
        x,
        y,
        device,
        precision: str,
        batch_size: int,
        graphs: bool,
        scale=None,
        chunk: int | None = None,
        count_correct: bool = True,
        task=None,
    ) -> None:
        """`batch_size`: images per step on this process. `scale`: None for the batch-mean loss, or the factor
        on the batch's summed loss (data-parallel: world size / global batch, so DDP's average is exact).
        `chunk`: steps per CUDA-graph replay (default `chunk_for(batch_size, device)`). `count_correct=False`
        drops the per-step accuracy kernels (argmax, compare, sum) for callers that never read the count: the
        count returned is then 0. `task`: a generative kind's step (generative.tasks); None is MyNet's, below.
        A task's step returns (losses, sums): the step's loss (or one per batch key) and per-epoch sums."""
        self.model, self.optimizer, self.x, self.y = model, optimizer, x, y
        self.device, self.precision, self.batch_size, self.scale = device, precision, batch_size, scale
        self.count_correct, self.task = count_correct, task
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.chunk = (chunk or chunk_for(batch_size, device)) if graphs else 1
        self.graphs: dict[int, _Graph] = {}
        if graphs and self.scaler is None:
            self._capture()

    def train_on(self, xb: torch.Tensor, yb: torch.Tensor, scale=None, step: int = 0):
        """One eager optimizer step on an explicit batch (global step number `step`: a generative kind's noise
        is drawn from it); returns (loss, correct) as device tensors."""
        scale = self.scale if scale is None else scale
        if self.task is not None and self.task.train_on is not None:
            return self.task.train_on(self, xb, yb, scale, step)
        with autocast(self.device, self.precision):
            logits = self.model(xb)
            if scale is None:
                loss = F.cross_entropy(logits, yb)
            else:
                loss = F.cross_entropy(logits, yb, reduction="sum") * scale
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        ok = (logits.argmax(1) == yb).sum() if self.count_correct else torch.zeros((), device=yb.device)
        return loss.detach().float(), ok

    def _body(self, idx_block: torch.Tensor, lrs: list, first_step: int = 0):
        """len(lrs) steps on consecutive batch_size slices of idx_block; the code a CUDA graph captures."""
        losses, correct = [], None
        bs = self.batch_size
        for j, lr in enumerate(lrs):
            set_lr(self.optimizer, lr)
            idx = idx_block[j * bs : (j + 1) * bs]
            loss, ok = self.train_on(self.x[idx], self.y[idx], step=first_step + j)
            losses.append(loss)
            correct = ok if correct is None else correct + ok
        return torch.stack(losses), correct

    def steps(
        self,
        idx_block: torch.Tensor,
        lrs: list[float],
        lr_table: torch.Tensor | None = None,
        first_step: int = 0,
    ):
        """Train on len(lrs) batches; `lr_table` (the same values on the device) feeds a replayed graph.
        `first_step`: the global number of the first of them (graphs capture MyNet only: it draws no noise)."""
        graph = self.graphs.get(len(lrs))
        if graph is None or len(idx_block) != len(graph.idx):
            return self._body(
                idx_block, lrs, first_step
            )  # eager: no graph, or the epoch's last, smaller batch
        graph.idx.copy_(idx_block)
        graph.lrs.copy_(lr_table if lr_table is not None else torch.tensor(lrs))
        graph.graph.replay()
        return graph.out

    def _capture(self) -> None:
        # Warm-up steps initialise cuDNN/cuBLAS and the optimizer state on a side stream, as capture requires.
        # They must not change the run: the weights and optimizer state are restored before capturing.
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        saved_opt = {
            p: {k: v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)}
            for p, st in self.optimizer.state.items()
        }
        warm_idx = torch.arange(self.batch_size, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        # DDP rebuilds its gradient buckets after its first iterations: it needs 11 before capture.
        warmups = 11 if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) else 3
        with torch.cuda.stream(side):
            for _ in range(warmups):
                self._body(warm_idx, [0.0])
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(saved[k])
            for p, state in self.optimizer.state.items():
                for k, v in state.items():
                    if isinstance(v, torch.Tensor):  # as before the warm-up: a resumed run's, or zero (fresh)
                        v.copy_(saved_opt[p][k]) if k in saved_opt.get(p, {}) else v.zero_()
        for k in sorted({self.chunk, 1}):
            self.graphs[k] = _Graph(self, k)
