"""Pictures from a run folder's files; never trains or evaluates.

Usage: `plot_loss(Path("runs/x/metrics.jsonl"), Path("runs/x/loss.png"))`.
"""

from __future__ import annotations

from pathlib import Path

from mnistcnn.errors import MnistcnnError
from mnistcnn.outputs import save_figure
from mnistcnn.rundir import newest_run, read_metrics
from mnistcnn.safeio import shown


def resolve_metrics(target: str | Path | None, runs: str | Path = "runs") -> tuple[Path, Path | None]:
    """(metrics.jsonl, the run folder it must lie inside or None) of a run folder, a metrics.jsonl named
    outright (it may be a link: the user chose it), or None for the newest run under `runs/`."""
    path, within = newest_run(runs) if target is None else Path(target), None
    if path.is_dir():
        path, within = path / "metrics.jsonl", path
    if not path.exists():  # anything else there (a FIFO, a folder) is refused by read_metrics in one line
        raise MnistcnnError(f"{path} does not exist; pass a run folder (runs/<time>) or its metrics.jsonl")
    return path, within


def _moving_average(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_loss(metrics: Path, out: Path, log=lambda _: None, within: Path | None = None) -> Path:
    """Batch loss (faint) with its moving average and epoch boundaries; accuracy per epoch below.

    Lines that are not valid records (not UTF-8, not JSON, missing keys, wrong types) are skipped and counted
    through `log`; the picture is written atomically (the old one stays if the write fails). `within`: the run
    folder the user named, which the file must lie inside (safeio's policy for links)."""
    # A bare Figure (no pyplot) with fixed margins: pyplot's import and the constrained layout cost ~1.5 s of
    # every training command's end on the 2-core test machine; this draws the same picture in ~0.5 s.
    from matplotlib.figure import Figure

    records, skipped = read_metrics(metrics, skip_bad=True, within=within)
    if skipped:
        log(f"skipped {skipped} line{'s' if skipped > 1 else ''} of {metrics} that are not mnistcnn records")
    batches = [r for r in records if r["type"] == "batch"]
    if not batches:
        bad = f" ({skipped} bad lines skipped)" if skipped else ""
        raise MnistcnnError(
            f"{metrics} holds no batch losses{bad}: nothing to plot; is it an mnistcnn metrics.jsonl of a run?"
        )
    fig = Figure(figsize=(9, 7))
    fig.subplots_adjust(left=0.09, right=0.98, top=0.95, bottom=0.075, hspace=0.3)
    ax1, ax2 = fig.subplots(2, 1, height_ratios=[3, 2])
    epochs = [r for r in records if r["type"] == "epoch"]
    tests = [r for r in records if r["type"] == "test"]
    gan = any("g_loss" in r for r in batches)
    classifier = not gan and (not epochs or "train_acc" in epochs[0])
    unit = "cross-entropy loss" if classifier else ("loss" if gan else "nats per image")
    _loss_axes(ax1, batches, f"Training loss — {shown(metrics.parent.name)}", unit, gan)
    if classifier:
        _accuracy_axes(ax2, epochs, tests)
    else:
        _epoch_loss_axes(ax2, epochs, tests, gan)
    return save_figure(fig, out)


def _loss_axes(
    ax1, batches: list[dict], title: str, unit: str = "cross-entropy loss", gan: bool = False
) -> None:
    steps = [r["step"] for r in batches]
    lines = [("loss", "D loss" if gan else "batch loss", "tab:blue")]
    if gan:
        lines.append(("g_loss", "G loss", "tab:orange"))
    window = max(1, min(500, len(steps) // 50))
    for key, label, color in lines:
        xs = [r["step"] for r in batches if key in r]
        losses = [r[key] for r in batches if key in r]
        ax1.plot(xs, losses, color=color, alpha=0.25, linewidth=0.6, label=label)
        ax1.plot(
            xs,
            _moving_average(losses, window),
            color=color,
            linewidth=1.8,
            label=f"{label}: moving average ({window} batches)"
            if gan
            else f"moving average ({window} batches)",
        )
    ends = {}
    for r in batches:
        ends[r["epoch"]] = r["step"]
    for epoch, end in sorted(ends.items())[:-1]:
        ax1.axvline(end, color="gray", linestyle="--", linewidth=0.8)
        ax1.text(
            end,
            0.02,
            f"epoch {epoch} ",
            transform=ax1.get_xaxis_transform(),
            fontsize=8,
            va="bottom",
            ha="right",
            color="gray",
            rotation=90,
        )
    if not gan:  # a hinge G loss goes below zero: a GAN's axis stays linear
        ax1.set_yscale("log")
    ax1.set_xlabel("training step (batch)")
    ax1.set_ylabel(unit if gan else f"{unit} (log scale)")
    ax1.set_title(title)
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(loc="upper right")


def _epoch_loss_axes(ax2, epochs: list[dict], tests: list[dict], gan: bool) -> None:
    """Per epoch: a generative run's mean losses (a VAE's negative ELBO; a GAN's D and G), validation, test."""
    if not epochs:
        ax2.text(0.5, 0.5, "no finished epoch yet", ha="center", va="center", transform=ax2.transAxes)
    else:
        xs = [r["epoch"] for r in epochs]
        series = [("train_loss", "D loss" if gan else "train (during the epoch)", "o-")]
        series += [("train_g_loss", "G loss", "o-")] if gan else [("val_loss", "validation", "s-")]
        for key, label, style in series:
            pts = [(r["epoch"], r[key]) for r in epochs if key in r]
            if pts:
                ax2.plot(*zip(*pts), style, label=label)
        for t in tests if not gan else []:
            ax2.plot(
                [t["epoch"]],
                [t["test_loss"]],
                "*",
                markersize=14,
                color="tab:red",
                label=f"test {t['test_loss']:.2f}",
            )
        ax2.set_xticks(xs)
        ax2.legend(loc="upper right")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mean loss per epoch" if gan else "nats per image")
    ax2.grid(True, alpha=0.3)


def _accuracy_axes(ax2, epochs: list[dict], tests: list[dict]) -> None:
    if epochs:
        xs = [r["epoch"] for r in epochs]
        ax2.plot(xs, [100 * r["train_acc"] for r in epochs], "o-", label="train (during the epoch)")
        if any("val_acc" in r for r in epochs):
            ax2.plot(
                [r["epoch"] for r in epochs if "val_acc" in r],
                [100 * r["val_acc"] for r in epochs if "val_acc" in r],
                "s-",
                label="validation",
            )
        for t in tests:
            ax2.plot(
                [t["epoch"]],
                [100 * t["test_acc"]],
                "*",
                markersize=14,
                color="tab:red",
                label=f"test {100 * t['test_acc']:.2f} %",
            )
        ax2.set_xticks(xs)
        ax2.legend(loc="lower right")
    else:
        ax2.text(0.5, 0.5, "no finished epoch yet", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.grid(True, alpha=0.3)
