"""TrainConfig: every knob of a training run, its default, its range and why; TOML loading and flag merging.

Usage: `cfg = load_config("fast", overrides={"epochs": 3})` (a shipped recipe, see mnistcnn.recipes) or
`load_config("my.toml")`; `catalog()` lists the shipped recipes.
Precedence: defaults < recipe or TOML file < command-line overrides. Validated by pydantic (strict: "3" is not an int,
true is not a number; ints are accepted for floats); a mistake is one ConfigError line naming the key.
Imported only by commands (pydantic stays out of `mnistcnn --help`).
"""

from __future__ import annotations

import difflib
import math
import sys
import typing
from pathlib import Path
from typing import Literal

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mnistcnn import recipes
from mnistcnn.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MNIST_TRAIN = 60_000  # images in MNIST's training set: no batch, split or limit needs more
DEVICE_PATTERN = r"(?i)^\s*(auto|cpu|mps|cuda(:\d{1,3})?)\s*$"


def _key(default, why: str, kind: str = "recipe", **bounds):
    """A config key: its default, why, and whether it is part of the recipe (fixed for the life of a run),
    the run's length (`--resume` may raise it) or the engine (how it is computed: may change on resume)."""
    return Field(default, description=why, json_schema_extra={"kind": kind}, **bounds)


class TrainConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", validate_assignment=True, allow_inf_nan=False)

    epochs: int = _key(
        5, "5 epochs of one-cycle Adam reach >= 99.2 % (99.24 %, README)", "length", gt=0, le=10_000
    )
    # --- recipe (changing these changes what is trained) ---
    model: Literal["mynet", "ae", "vae", "cvae", "gan"] = _key(
        "mynet", "the lecture's classifier, or a generative kind (mnistcnn summary --model KIND)"
    )
    latent: int | None = _key(
        None, "generative kinds: size of the latent code (None = the kind's default)", ge=2, le=512
    )
    d_lr_ratio: float = _key(
        2.0, "gan only: the discriminator's LR over the generator's (TTUR)", gt=0, le=100
    )
    ema: float = _key(
        0.999, "gan only: decay of the generator's moving average (samples come from it)", ge=0, lt=1
    )
    batch_size: int = _key(128, "keeps the CPU/GPU busy, yet many updates per epoch", gt=0, le=MNIST_TRAIN)
    lr: float = _key(
        3e-3, "peak LR of the one-cycle schedule; Adam on MyNet diverges above ~1e-2", gt=0, le=10
    )
    optimizer: Literal["adam", "sgd"] = _key(
        "adam", "the lecture's Adam; sgd (with momentum) comes first there"
    )
    momentum: float = _key(0.9, "SGD only: the usual heavy-ball value", ge=0, lt=1)
    beta1: float = _key(0.9, "Adam only: torch's default decay of the gradient average", ge=0, lt=1)
    beta2: float = _key(0.999, "Adam only: torch's default decay of the squared-gradient average", ge=0, lt=1)
    weight_decay: float = _key(0.0, "MyNet is small and MNIST large: no regularisation needed", ge=0, le=1)
    schedule: Literal["none", "onecycle", "step"] = _key("onecycle", "warm-up then cosine: robust and fast")
    warmup: float = _key(0.2, "onecycle: fraction of all steps spent rising to the peak LR", ge=0, lt=1)
    step_every: int = _key(
        1, "step schedule: multiply the LR by step_gamma every this many epochs", gt=0, le=10_000
    )
    step_gamma: float = _key(0.5, "step schedule: the factor (<= 1: the LR never grows)", gt=0, le=1)
    # Input normalisation x = (pixel/255 - mean) / std. MNIST's own statistics (train set) centre the data,
    # which speeds up training; null/None ("none" in TOML) for both = the lecture's plain ToTensor (pixels/255).
    mean: float | None = _key(0.1307, "MNIST's mean pixel / 255", ge=-1, le=1)
    std: float | None = _key(0.3081, "MNIST's pixel std / 255", ge=1e-3, le=100)
    activation: Literal["relu", "sigmoid", "tanh"] = _key("relu", "the lecture's; sigmoid/tanh to compare")
    shuffle: bool = _key(True, "reshuffle every epoch, as the lecture's DataLoader does")
    val_split: int = _key(
        0, "images held out of the end of the training set (0 = none)", ge=0, le=MNIST_TRAIN - 1
    )
    train_limit: int | None = _key(
        None, "train on the first N images only (None = all)", gt=0, le=MNIST_TRAIN
    )
    seed: int = _key(
        0, "seeds the weights and every epoch's shuffle: same seed, same run", ge=0, le=2**63 - 1
    )
    # --- engine (how it is computed; the numbers stay the same up to float rounding) ---
    device: str = _key("auto", "auto = cuda, then mps, then cpu", "engine", pattern=DEVICE_PATTERN)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _key("auto", "bf16 where fast, else fp32", "engine")
    loader: Literal["tensor", "torchvision"] = _key("tensor", "data resident on the device", "engine")
    eval_batch_size: int = _key(1000, "no backward pass: big batches are cheaper", "engine", gt=0, le=100_000)
    channels_last: Literal["auto", "on", "off"] = _key("auto", "on where measured faster (CPU)", "engine")
    compile: bool = _key(False, "torch.compile the model; pays off only for long runs", "engine")
    cuda_graphs: bool = _key(True, "CUDA only: capture the whole step and replay it", "engine")
    deterministic: bool = _key(False, "deterministic algorithms (bit-exact reruns; may be slower)", "engine")
    log_every: int = _key(
        0, "host sync interval in steps (0 = about twice a second)", "engine", ge=0, le=10**6
    )
    keep_epochs: bool = _key(
        False,
        "also write epochs/epoch-NNN.pt, the weights after each epoch (~171 KB for MyNet), to replay training",
        "engine",
    )

    @field_validator("mean", "std", "train_limit", "latent", mode="before")
    @classmethod
    def _none(cls, value):
        return (
            None if isinstance(value, str) and value.strip().lower() == "none" else value
        )  # TOML has no null

    @model_validator(mode="after")
    def _together(self) -> TrainConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("set both mean and std, or neither (the lecture's plain ToTensor)")
        if self.train_limit is not None and self.batch_size > self.train_limit:
            raise ValueError(
                f"batch_size {self.batch_size} is larger than train_limit {self.train_limit}: "
                "a batch cannot hold more images than the training set; lower --batch-size"
            )
        return self

    def normalization(self) -> tuple[float, float]:
        """(mean, std) of the model's input; generative kinds model pixels/255 themselves (mean/std unused)."""
        return normalization(self.mean, self.std) if self.model == "mynet" else (0.0, 1.0)

    def to_dict(self) -> dict:
        return self.model_dump()


def keys_of(kind: str) -> tuple[str, ...]:
    """The keys of one kind: "recipe", "length" or "engine"."""
    return tuple(k for k, f in TrainConfig.model_fields.items() if f.json_schema_extra["kind"] == kind)


RECIPE_KEYS = keys_of("recipe")  # fixed for the life of a run: `--resume` refuses to change them
ENGINE_KEYS = keys_of("length") + keys_of("engine")  # `--resume` may change these


def _show(value: typing.Any) -> str:
    """A short one-line picture of a value: repr for numbers, strings and small containers, else the type."""
    if not isinstance(value, (str, int, float, bool, list, tuple, dict, type(None))):
        return type(value).__name__
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def requirement(key: str) -> tuple[str, str]:
    """(what kind of value, its range) of a key, in words: ("an integer", ">= 1 and <= 10000")."""
    field = TrainConfig.model_fields[key]
    base = field.annotation
    optional = type(None) in typing.get_args(base)
    if optional:
        base = next(a for a in typing.get_args(base) if a is not type(None))
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(typing.get_args(base)), ""
    kind = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}[base]
    words = {at.Gt: (">", "gt"), at.Ge: (">=", "ge"), at.Lt: ("<", "lt"), at.Le: ("<=", "le")}
    bounds = [
        f"{words[type(m)][0]} {_number(getattr(m, words[type(m)][1]))}"
        for m in field.metadata
        if type(m) in words
    ]
    if key == "device":
        kind = "auto, cpu, cuda, cuda:N or mps"
    return kind + (" or 'none'" if optional else ""), " and ".join(bounds)


def _number(value: float) -> str:
    return f"{value:,}".replace(",", "_") if isinstance(value, int) and value > 99_999 else f"{value:g}"


def _message(e: ValidationError, origin: str = "") -> str:
    """One line naming the key: what it must be and what it was."""
    err = e.errors(include_url=False)[0]
    where = f" (in {origin})" if origin else ""
    if not err["loc"]:  # a rule between keys (model validator)
        return err["msg"].removeprefix("Value error, ") + where
    key, value = str(err["loc"][0]), err.get("input")
    kind, bounds = requirement(key)
    if key == "device" and isinstance(value, str):
        return f"unknown device {value!r}{where}; use auto, cpu, cuda, cuda:N or mps"
    if err["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{key} must be {bounds}; got {_show(value)}{where}"
    if err["type"] == "literal_error":
        return f"{key} must be {kind}; got {_show(value)}{where}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key} must be a finite number {bounds}; got {value}{where}".replace("  ", " ")
    got = "null" if value is None else _show(value)
    got = got if got == type(value).__name__ else f"{type(value).__name__} {got}"
    return f"{key} must be {kind}{' ' + bounds if bounds else ''}; got {got}{where}"


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every key and rule again (e.g. after attributes were set one by one). Raises ConfigError."""
    from_dict(cfg.model_dump())
    return cfg


def from_dict(values: typing.Any, base: TrainConfig | None = None, source: str = "config") -> TrainConfig:
    """Apply `values` on top of `base` (defaults when None), checking every key, type and range."""
    origin = "" if source in ("config", "command-line flags") else source
    _check_table(values, source, origin)
    merged = {**(base.model_dump() if base is not None else {}), **values}
    return _validated(merged, dict.fromkeys(values, origin), origin)


def _check_table(values: typing.Any, source: str, origin: str) -> None:
    if not isinstance(values, dict):
        where = f" (in {origin})" if origin else ""
        raise ConfigError(f"the config must be a table of keys; got {type(values).__name__}{where}")
    fields = TrainConfig.model_fields
    for key in values:
        if key not in fields:
            close = [k for k in fields if k.replace("_", "") == str(key).replace("_", "").replace("-", "")]
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            name = _show(key)
            name = name if len(name) <= 32 else name[:29] + "..."
            raise ConfigError(
                f"unknown key {name} in {source}{hint}; valid keys: {', '.join(fields)}", key=key
            )


def _validated(values: dict, origins: dict, origin: str) -> TrainConfig:
    """TrainConfig of `values`; an error names the key and where its value came from (`origins[key]`)."""
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as e:
        loc = e.errors(include_url=False)[0]["loc"]
        key = str(loc[0]) if loc else None
        raise ConfigError(_message(e, origins.get(key, "") if key else origin), key=key) from None


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    from mnistcnn import safeio

    if path.is_dir():
        names = ", ".join(recipes.names())
        raise ConfigError(f"config file {path} is a folder; pass a recipe name ({names}) or a TOML file")
    try:
        return tomllib.loads(safeio.read_capped(path, safeio.CONFIG_CAP).decode("utf-8"))
    except safeio.Refused as e:
        raise ConfigError(f"config file {e}") from None
    except FileNotFoundError:
        raise ConfigError(_missing(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply to be a config") from None


def _missing(path: Path) -> str:
    """The one line for a `--config` that is neither a shipped recipe nor a file: the recipe it may have meant."""
    names = recipes.names()
    if path.suffix == ".toml" and path.stem in names:  # configs/fast.toml of older releases
        return f"config file {path} does not exist; did you mean the shipped recipe: --config {path.stem}?"
    if len(path.parts) == 1 and not path.suffix:  # a bare name
        close = difflib.get_close_matches(path.name, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"no recipe or file named {path.name!r}{hint}; the recipes: {', '.join(names)} (see mnistcnn recipes)"
    return f"config file {path} does not exist; pass a recipe name ({', '.join(names)}) or a TOML file"


def read_config(config: str | Path) -> tuple[dict, str]:
    """(values, origin for errors) of a `--config` value: a shipped recipe's name or a TOML file's path."""
    src = recipes.source(config)
    if src.name is None:
        return read_toml(src.path), src.origin
    try:
        return tomllib.loads(recipes.text(src.name)), src.origin
    except tomllib.TOMLDecodeError as e:  # a recipe dropped into the package by hand
        raise ConfigError(f"{src.origin} is not valid TOML: {str(e).splitlines()[0]}") from None


def load_config(config: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """Defaults < recipe or TOML file < overrides (None values in overrides mean 'not given'), checked together:
    a flag may fix what the file set (an error names the file only for a value that came from it).
    `config`: a str is a shipped recipe's name, else a path (the command line's rule, `recipes.source`); a
    Path object is always a file."""
    values, origin = read_config(config) if config is not None else ({}, "")
    _check_table(values, origin, origin)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_table(given, "command-line flags", "")
    origins = {**dict.fromkeys(values, origin), **dict.fromkeys(given, "")}
    return _validated({**values, **given}, origins, origin)


def catalog() -> list[dict]:
    """Every shipped recipe: name, model, epochs, batch_size, lr, why, measured (`mnistcnn recipes`, the page)."""
    rows = []
    for name in recipes.names():
        cfg = load_config(name)
        rows.append(
            {
                "name": name,
                "model": cfg.model,
                "epochs": cfg.epochs,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
            }
        )
        rows[-1].update(recipes.header(name))
    return rows


def normalization(mean: float | None, std: float | None) -> tuple[float, float]:
    """The input normalisation a config asks for: (mean, std) applied after pixels/255, or (0, 1) — the
    lecture's plain ToTensor — when they are null. `data.normalize` applies it."""
    if mean is None or std is None:
        return 0.0, 1.0
    return float(mean), float(std)
