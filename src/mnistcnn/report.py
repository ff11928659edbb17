"""Training progress on the terminal: a rich progress bar, or plain log lines when stdout is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mnistcnn.safeio import shown


class Reporter(Protocol):
    def log(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, steps_done: int, loss: float, images_per_s: float) -> None: ...
    def end_epoch(self, record: dict) -> None: ...


class Silent:
    """The reporter of ranks other than 0: they train, rank 0 talks."""

    def log(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, steps_done: int, loss: float, images_per_s: float) -> None: ...
    def end_epoch(self, record: dict) -> None: ...


# What an epoch line shows besides the losses, in order (each kind records some of them): (key, label, unit).
_SHOWN = (
    ("train_g_loss", "G loss", ""),
    ("train_acc", "train acc", "%"),
    ("train_kl", "KL", ""),
    ("val_loss", "val loss", ""),
    ("val_acc", "val acc", "%"),
    ("val_d_real", "D(real val)", ""),
    ("val_d_fake", "D(fake)", ""),
)


def format_epoch(r: dict) -> str:
    """One line per epoch: MyNet's loss and accuracies, a VAE's ELBO terms, a GAN's D and G losses."""
    label = "D loss" if "train_g_loss" in r else "train loss"
    parts = [f"{label} {r['train_loss']:.4f}"]
    for key, name, unit in _SHOWN:
        if key in r:
            parts.append(f"{name} {100 * r[key]:.2f} %" if unit == "%" else f"{name} {r[key]:.4f}")
    return (
        f"epoch {r['epoch']}: "
        + ", ".join(parts)
        + f", {r['seconds']:.1f} s ({r['images_per_s']:,.0f} img/s)"
    )


class PlainReporter:
    """One line per epoch plus a line every ~10 s: readable in CI logs and files."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.last = 0.0

    def log(self, text: str) -> None:
        print(shown(text), file=self.stream, flush=True)  # a run folder's name cannot drive the terminal

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch, self.epochs, self.steps, self.last = epoch, epochs, steps, time.monotonic()

    def advance(self, steps_done: int, loss: float, images_per_s: float) -> None:
        if time.monotonic() - self.last > 10 and steps_done < self.steps:
            self.last = time.monotonic()
            self.log(
                f"epoch {self.epoch}/{self.epochs} step {steps_done}/{self.steps} "
                f"loss {loss:.4f} {images_per_s:,.0f} img/s"
            )

    def end_epoch(self, record: dict) -> None:
        self.log(format_epoch(record))


class RichReporter(PlainReporter):
    """A progress bar per epoch with loss, images/s and ETA."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console()
        self.progress: Progress | None = None

    def log(self, text: str) -> None:
        self.console.print(shown(text), highlight=False, markup=False)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=steps, loss="-", speed="-")
        self.progress.start()

    def advance(self, steps_done: int, loss: float, images_per_s: float) -> None:
        self.progress.update(
            self.task, completed=steps_done, loss=f"{loss:.4f}", speed=f"{images_per_s:,.0f}"
        )

    def end_epoch(self, record: dict) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.log(format_epoch(record))


def reporter_for_stdout():
    return RichReporter() if sys.stdout.isatty() else PlainReporter()
