"""The checkpoint schema: what a checkpoint dict must hold before anything uses it — types, ranges, the model's
tensor names/shapes/dtypes (its kind's module built on the meta device: kinds.expected_shapes), the optimizer
state's structure, a config TrainConfig accepts, a consistent position.

Usage: `cfg = check(ckpt, path)` (eval, predict, show, summary, export); `check(ckpt, path, resume=True)`
(--resume needs the optimizer state and the position too). A per-epoch snapshot (`"snapshot": true`, weights
only: checkpoint.snapshot) passes the first and is refused by the second. Any violation is one CheckpointError
naming the field.
"""

from __future__ import annotations

import math
import typing

import torch

from mnistcnn.config import MNIST_TRAIN, TrainConfig, from_dict
from mnistcnn.errors import CheckpointError, ConfigError

# MyNet's state dict, in parameter order (the optimizer state numbers the parameters 0..5 in this order); a test
# pins it against the module the registry builds.
MODEL_SHAPES = {
    "conv1.weight": (32, 1, 3, 3),
    "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3),
    "conv2.bias": (64,),
    "fc1.weight": (10, 2304),
    "fc1.bias": (10,),
}
# Hyper-parameters each optimizer's param group must carry, and the entries its per-parameter state may hold.
GROUP_KEYS = {
    "adam": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "sgd": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
}
STATE_KEYS = {"adam": {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}, "sgd": {"momentum_buffer"}}
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class Bad(Exception):
    """One violation: the field (dotted path) and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field


class NonFinite(Bad):
    """A tensor holding NaN or infinite values; `what` says which."""

    def __init__(self, field: str, what: str) -> None:
        super().__init__(field, f"holds {what} values")
        self.what = what


def _show(value: typing.Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(d: dict, key: str, low: int, high: int, where: str = "") -> int:
    value = d.get(key)  # a missing key reads as None: "must be an integer …; got None"
    if not is_int(value) or not low <= value <= high:
        raise Bad(f"{where}{key}", f"must be an integer in {low}..{high}; got {_show(value)}")
    return value


def number(value, field: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.dtype in FLOATS + (torch.int64,):
        value = value.item()
    if not is_number(value) or not low <= value <= high:
        raise Bad(field, f"must be a finite number in [{low:g}, {high:g}]; got {_show(value)}")
    return float(value)


def tensor(value, field: str, shape: tuple) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Bad(field, f"must be a tensor of shape {shape}; got {_show(value)}")
    if value.layout != torch.strided or value.dtype not in FLOATS or tuple(value.shape) != shape:
        raise Bad(
            field, f"must be a dense float tensor of shape {shape}; got {value.dtype} {tuple(value.shape)}"
        )
    if not torch.isfinite(value).all():
        raise NonFinite(field, "NaN" if torch.isnan(value).any() else "infinite")
    return value


def check(ckpt: typing.Any, path, resume: bool = False) -> TrainConfig:
    """Check the whole checkpoint; return its config. `resume`: also what continuing a run needs."""
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in ("model", "config", "version")):
        raise CheckpointError(
            f"{path} is a torch file but not an mnistcnn checkpoint (needs keys model, config, version)"
        )
    try:
        cfg = from_dict(ckpt["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path} holds a config this mnistcnn cannot use: {e}") from None
    try:
        if not isinstance(ckpt.get("snapshot", False), bool):
            raise Bad("snapshot", f"must be true or false; got {_show(ckpt['snapshot'])}")
        if resume and ckpt.get("snapshot") is True:
            raise CheckpointError(
                f"{path} is a per-epoch snapshot (weights only, no optimizer state) and cannot be resumed; "
                "resume its run folder instead: mnistcnn train --resume RUN_DIR (its last.pt)"
            )
        shapes, groups = expected(ckpt, cfg)
        check_model(ckpt["model"], shapes, ckpt.get("kind", "mynet"))
        if resume:
            for key in ("optimizer", "epoch", "step"):
                if key not in ckpt:
                    raise Bad(
                        key, "is missing (a checkpoint to resume from has model, optimizer, epoch, step)"
                    )
        if "optimizer" in ckpt:
            check_optimizer(ckpt["optimizer"], cfg.optimizer, groups)
        check_position(ckpt, cfg, resume)
    except Bad as e:
        if isinstance(e, NonFinite) and e.field.startswith("model."):
            raise CheckpointError(
                f"{path} holds {e.what} weights ({e.field[6:]}); it cannot be used — take an earlier checkpoint "
                "(best.pt) or train again with a lower --lr"
            ) from None
        raise CheckpointError(f"{path} is damaged or not from this mnistcnn: {e}") from None
    return cfg


def expected(ckpt: dict, cfg: TrainConfig) -> tuple[dict, list[list[tuple]]]:
    """(state_dict shapes, per optimizer group the parameter shapes) of the model the checkpoint says it holds:
    its `kind` and `model_args` must agree with its config, and the shapes are the built module's own."""
    from mnistcnn import kinds

    kind = ckpt.get("kind", "mynet")
    if kind not in kinds.KINDS:
        raise Bad("kind", f"must be one of {', '.join(kinds.NAMES)}; got {_show(kind)}")
    if kind != cfg.model:
        raise Bad("kind", f"is {kind!r} but the config trains {cfg.model!r}")
    want = kinds.KINDS[kind].args_of(cfg.to_dict())
    args = ckpt.get("model_args", want)
    if args != want:
        raise Bad("model_args", f"must be {want} (what the config asks for); got {_show(args)}")
    return kinds.expected_shapes(kind, want)


def check_model(model, shapes: dict, kind: str = "mynet") -> None:
    what = "MyNet's" if kind == "mynet" else f"the {kind}'s"
    who = "MyNet" if kind == "mynet" else f"the {kind}"
    if not isinstance(model, dict):
        raise Bad("model", f"must be {what} state dict; got {_show(model)}")
    for name, shape in shapes.items():
        if name not in model:
            raise Bad("model", f"has no {name} (not {what} weights)")
        tensor(model[name], f"model.{name}", shape)
    extra = [k for k in model if k not in shapes]
    if extra:
        raise Bad("model", f"has an entry {who} does not have: {_show(extra[0])}")


def check_optimizer(opt, kind: str, groups_shapes: list[list[tuple]] | None = None) -> None:
    """The structure torch's Optimizer.load_state_dict expects, for the config's optimizer (adam or sgd) and
    the model's parameter groups (`groups_shapes`: per group its parameters' shapes; default MyNet's one)."""
    if groups_shapes is None:
        groups_shapes = [list(MODEL_SHAPES.values())]
    shapes = [shape for g in groups_shapes for shape in g]
    if not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list) or "state" not in opt:
        raise Bad("optimizer", f"must be a dict with state and param_groups; got {_show(opt)}")
    groups, state = opt["param_groups"], opt["state"]
    if len(groups) != len(groups_shapes) or not all(isinstance(g, dict) for g in groups):
        n = len(groups_shapes)
        many = "one dict (MyNet trains as one group)" if n == 1 else f"{n} dicts (the model's groups)"
        raise Bad("optimizer.param_groups", f"must be a list of {many}")
    first = 0
    for g, (group, sizes) in enumerate(zip(groups, groups_shapes)):
        numbers = list(range(first, first + len(sizes)))
        if group.get("params") != numbers:
            shown_numbers = f"[{numbers[0]}, ..., {numbers[-1]}]" if len(numbers) > 6 else str(numbers)
            raise Bad(
                f"optimizer.param_groups[{g}].params",
                f"must be {shown_numbers}; got {_show(group.get('params'))}",
            )
        first += len(sizes)
        for key in GROUP_KEYS[kind]:
            if key not in group:
                raise Bad(f"optimizer.param_groups[{g}].{key}", f"is missing (not a {kind} state)")
        for key, value in group.items():
            check_group_value(key, value, g)
    if not isinstance(state, dict):
        raise Bad("optimizer.state", f"must be a dict; got {_show(state)}")
    for index, entry in state.items():
        field = f"optimizer.state[{_show(index)}]"
        if not is_int(index) or not 0 <= index < len(shapes) or not isinstance(entry, dict):
            raise Bad(field, f"must map a parameter number 0..{len(shapes) - 1} to a dict of tensors")
        for key, value in entry.items():
            if key not in STATE_KEYS[kind]:
                raise Bad(f"{field}", f"has an entry a {kind} state does not have: {_show(key)}")
            if key == "step":
                number(value, f"{field}.step", 0, 2**53)
            elif not (key == "momentum_buffer" and value is None):
                tensor(value, f"{field}.{key}", shapes[index])


def check_group_value(key, value, g: int = 0) -> None:
    field = f"optimizer.param_groups[{g}].{key if isinstance(key, str) else _show(key)}"
    if key == "params":
        return
    if key == "betas":
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise Bad(field, f"must be two numbers in [0, 1); got {_show(value)}")
        for beta in value:
            number(beta, field, 0, 0.999999)
    elif key in ("lr", "eps", "weight_decay", "momentum", "dampening", "lr_ratio"):
        number(value, field, 0, 1e6)
    elif key == "param_names":
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise Bad(field, "must be a list of names")
    elif not (value is None or isinstance(value, bool) or is_number(value)):
        raise Bad(field, f"must be true, false, null or a number; got {_show(value)}")


def check_position(ckpt: dict, cfg: TrainConfig, resume: bool) -> None:
    """epoch, batch, step, best, metrics and partial: present ones well-formed; for resume, consistent."""
    epoch = integer(ckpt, "epoch", 0, cfg.epochs) if "epoch" in ckpt else None
    most = math.ceil(MNIST_TRAIN / cfg.batch_size)  # steps per epoch on the largest training set
    batch = integer(ckpt, "batch", 0, most - 1) if "batch" in ckpt else 0
    step = integer(ckpt, "step", 0, (cfg.epochs + 1) * most) if "step" in ckpt else None
    if ckpt.get("best") is not None:  # None: no epoch scored yet
        number(ckpt["best"], "best", -(10**12), 10**12)
    metrics = ckpt.get("metrics", [])
    if not isinstance(metrics, list) or len(metrics) > (cfg.epochs + 1) * (most + 1):
        raise Bad("metrics", f"must be a list of records; got {_show(metrics)}")
    for i, record in enumerate(metrics):
        if not isinstance(record, dict) or not all(isinstance(k, str) for k in record):
            raise Bad(f"metrics[{i}]", f"must be a record (a dict); got {_show(record)}")
        if record.get("type") == "epoch":
            integer(record, "epoch", 1, cfg.epochs, f"metrics[{i}].")
            number(record.get("seconds"), f"metrics[{i}].seconds", 0, 1e12)
    if resume:
        check_resume_position(epoch, batch, step, most, cfg.epochs)
        done = sum(1 for r in metrics if r.get("type") == "epoch")
        if done != epoch:
            raise Bad("metrics", f"holds {done} epoch records, but epoch is {epoch}")
        check_partial(ckpt.get("partial", {}), batch)


def check_resume_position(epoch: int, batch: int, step: int, most: int, epochs: int) -> None:
    """step = epoch × (batches per epoch) + batch, for some batches per epoch in batch+1..most."""
    if batch and epoch >= epochs:
        raise Bad("batch", f"must be 0 once all {epochs} epochs are done; got {batch}")
    if epoch == 0:
        fits = step == batch
    else:
        per_epoch, rest = divmod(step - batch, epoch)
        fits = rest == 0 and batch < per_epoch <= most
    if not fits:
        raise Bad("step", f"{step} does not follow from epoch {epoch} and batch {batch}")


def check_partial(partial, batch: int) -> None:
    """What a run stopped mid-epoch measured so far: one loss per batch done, the correct count, the time."""
    if not isinstance(partial, dict):
        raise Bad("partial", f"must be a dict; got {_show(partial)}")
    if not batch:
        return
    losses = partial.get("losses")
    if not isinstance(losses, list) or len(losses) != batch:
        raise Bad(
            "partial.losses", f"must be a list of {batch} losses (one per batch done); got {_show(losses)}"
        )
    for (
        loss
    ) in losses:  # a number per batch (>= 0), or a short list (a GAN's D and G: the hinge G loss may be < 0)
        if isinstance(loss, list) and 1 <= len(loss) <= 4:
            for value in loss:
                number(value, "partial.losses", -1e9, 1e9)
        else:
            number(loss, "partial.losses", 0)
    if "correct" in partial:
        integer(partial, "correct", 0, MNIST_TRAIN, "partial.")
    sums = partial.get("sums", [])
    if not isinstance(sums, list) or len(sums) > 8:
        raise Bad("partial.sums", f"must be a short list of numbers; got {_show(sums)}")
    for value in sums:
        number(value, "partial.sums", -1e15, 1e15)
    number(partial.get("seconds", 0.0), "partial.seconds", 0, 1e12)


def check_steps(ckpt: dict, steps_per_epoch: int, path="the checkpoint") -> None:
    """At data-load time: the saved position must fit this training set (the same data, batch and split)."""
    epoch, batch, step = ckpt["epoch"], ckpt.get("batch", 0), ckpt["step"]
    if batch >= steps_per_epoch or step != epoch * steps_per_epoch + batch:
        raise CheckpointError(
            f"{path} stopped at step {step} (epoch {epoch}, batch {batch}), which does not fit this training set "
            f"({steps_per_epoch} batches per epoch); resume with the data it was trained on (--data-dir)"
        )
