"""Fuzzing with hypothesis: damaged checkpoints (a real one, mutated) through `checkpoint.load` and every command
that reads a checkpoint, and TOML configs through `train --config`. Whatever the input: exit 0 with valid output,
or exit 2 and one `error:` line — never a traceback — and nothing the user had is changed.
Deterministic (derandomize=True): the same cases on every run and every pytest-xdist worker."""

from __future__ import annotations

import copy
import json
import math
import shutil

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mnistcnn import checkpoint, data
from mnistcnn.cli import app
from mnistcnn.errors import CheckpointError

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def real_run(mnist_root, tmp_path_factory):
    """A real one-epoch run folder (256 images, 8 steps) to mutate."""
    run = tmp_path_factory.mktemp("fuzz") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    args = ["train", "--data-dir", mnist_root, "--epochs", 1, "--batch-size", 32, "--train-limit", 256]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--device", "cpu", "--run-dir", run]])
    mp.undo()
    assert result.exit_code == 0, result.output
    return run


class Real(dict):
    """The real checkpoint; a short repr keeps hypothesis' reports readable."""

    def __repr__(self) -> str:
        return "<the real checkpoint>"


@pytest.fixture(scope="module")
def real_ckpt(real_run):
    return Real(checkpoint.load(real_run / "last.pt", resume=True))


def garbage():
    """Values a damaged or hostile checkpoint might hold where something else belongs."""
    shapes = st.lists(st.integers(0, 4), max_size=3).map(tuple)
    fills = st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -1e30])
    dtypes = st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool])
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
    )
    tensors = st.builds(lambda s, v, d: torch.full(s, v).to(d), shapes, fills, dtypes)
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    )
    return st.one_of(scalars, tensors, nested)


def paths_of(ckpt: dict) -> list[tuple]:
    """Every place in the checkpoint a mutation can hit: top-level keys and the entries one or two levels down."""
    out = [(k,) for k in ckpt]
    out += [("config", k) for k in ckpt["config"]] + [("model", k) for k in ckpt["model"]]
    out += [("optimizer", "param_groups", 0, k) for k in ckpt["optimizer"]["param_groups"][0]]
    out += [("optimizer", "state", i, k) for i, s in ckpt["optimizer"]["state"].items() for k in s]
    out += [("metrics", 0, k) for k in ckpt["metrics"][0]] + [("partial",)]
    return out


@st.composite
def mutations(draw, ckpt: dict):
    """1–3 edits: delete a key, put garbage there, or NaN into a real tensor of the right shape."""
    state = copy.deepcopy(dict(ckpt))
    for _ in range(draw(st.integers(1, 3))):
        *parents, last = draw(st.sampled_from(paths_of(ckpt)))
        node = state
        for part in parents:
            ok = (
                isinstance(node, dict) and part in node or isinstance(node, list) and part in range(len(node))
            )
            node = node[part] if ok else None
        if isinstance(node, list) and last not in range(len(node)) or not isinstance(node, (dict, list)):
            continue  # an earlier edit replaced the parent
        old = node.get(last) if isinstance(node, dict) else node[last]
        how = draw(st.sampled_from(["delete", "garbage", "nan"]))
        if how == "delete" and isinstance(node, dict):
            node.pop(last, None)
        elif how == "nan" and isinstance(old, torch.Tensor) and old.is_floating_point() and old.numel():
            node[last] = bad = old.detach().clone().contiguous()
            bad.view(-1)[0] = float("nan")
        else:
            node[last] = draw(garbage())
    return state


def write(folder, state) -> object:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "last.pt"
    torch.save(state, path)
    return path


def snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def check(result, allow_ok: bool = True) -> str | None:
    """Exit 0 (when allowed) or exit 2 with one `error:` line; never a traceback. Returns the error line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    event(f"exit {result.exit_code}")  # --hypothesis-show-statistics shows the mix of accepted and refused
    if result.exit_code == 0 and allow_ok:
        return None
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@settings(FUZZ, max_examples=80)
@given(st.data())
def test_load_accepts_or_names_the_field(real_ckpt, tmp_path, data):
    state = data.draw(mutations(real_ckpt))
    path = write(tmp_path / "c", state)
    for resume in (False, True):
        try:
            ckpt = checkpoint.load(path, resume=resume)
        except CheckpointError as e:
            assert "\n" not in str(e) and str(e).startswith(str(path))
            continue
        model = checkpoint.model_from_checkpoint(ckpt)  # what load accepts, every user can use
        mean, std = checkpoint.normalization(ckpt)
        assert math.isfinite(mean) and std > 0
        assert all(torch.isfinite(p).all() for p in model.parameters())


@FUZZ
@given(st.data())
def test_eval_json_is_valid_json_or_one_line(real_ckpt, mnist_root, tmp_path, data):
    path = write(tmp_path / "c", data.draw(mutations(real_ckpt)))
    result = invoke("eval", path, "--json", "--data-dir", mnist_root, "--device", "cpu")
    if check(result) is None:
        metrics = json.loads(result.stdout)  # strict JSON: a bare NaN would not parse as a number here
        assert "NaN" not in result.stdout and set(metrics) == {"accuracy", "loss", "per_class", "n"}


@FUZZ
@given(st.data())
def test_summary_show_export_say_one_line(real_ckpt, tmp_path, data):
    path = write(tmp_path / "c", data.draw(mutations(real_ckpt)))
    command = data.draw(
        st.sampled_from(
            [
                ("summary", path),
                ("show", "filters", path, "--out", tmp_path / "f.png"),
                ("export", path, "--format", "torchscript", "--out", tmp_path / "m.pt"),
            ]
        )
    )
    before = path.read_bytes()
    check(invoke(*command))
    assert path.read_bytes() == before


@FUZZ
@given(st.data())
def test_resume_refuses_before_writing(real_ckpt, real_run, tmp_path, no_network, data):
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(real_run, run)
    write(run, data.draw(mutations(real_ckpt)))
    before = snapshot(run)
    result = invoke("train", "--resume", run, "--epochs", 3, "--data-dir", tmp_path / "no-data")
    line = check(result, allow_ok=False)
    event("refused the checkpoint" if "last.pt" in line else "checkpoint ok: stopped later")
    assert snapshot(run) == before  # every check runs before the first byte is written
    assert "last.pt" in line or "could not be downloaded" in line or "--epochs" in line


TOML_KEYS = st.sampled_from(
    [
        "epochs",
        "batch_size",
        "lr",
        "mean",
        "std",
        "seed",
        "device",
        "optimizer",
        "warmup",
        "shuffle",
        "train_limit",
        "val_split",
        "bogus",
    ]
)
TOML_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(alphabet="abcnoe01.-", max_size=6),
    st.lists(st.integers(0, 9), max_size=2),
)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value) if isinstance(value, list) else str(value)


@FUZZ
@given(st.dictionaries(TOML_KEYS, TOML_VALUES, max_size=4))
def test_train_config_checks_before_any_training(tmp_path, no_network, values):
    config = tmp_path / "c.toml"
    config.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))
    run = tmp_path / "run"
    result = invoke(
        "train", "--config", config, "--data-dir", tmp_path / "no-data", "--run-dir", run, "--device", "cpu"
    )
    line = check(result, allow_ok=False)
    event("refused the config" if str(config) in line else "config ok: stopped at the data")
    assert not run.exists()  # nothing was created
    assert (
        str(config) in line
        or "could not be downloaded" in line
        or "mean and std" in line
        or "train_limit" in line
    )


@pytest.fixture(scope="module")
def real_gan_ckpt(mnist_root, tmp_path_factory):
    """A real one-epoch GAN checkpoint (two optimizer groups, spectral-norm buffers, an EMA copy) to mutate."""
    run = tmp_path_factory.mktemp("fuzz-gan") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv(data.ENV_SUMS, str(mnist_root / "SHA256SUMS"))
    args = [
        "train",
        "--model",
        "gan",
        "--data-dir",
        mnist_root,
        "--epochs",
        1,
        "--batch-size",
        32,
        "--train-limit",
        64,
    ]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--device", "cpu", "--run-dir", run]])
    mp.undo()
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(run / "last.pt", resume=True)
    assert len(ckpt["optimizer"]["param_groups"]) == 2
    return Real(ckpt)


@settings(FUZZ, max_examples=40)
@given(st.data())
def test_a_damaged_gan_checkpoint_loads_whole_or_names_the_field(real_gan_ckpt, tmp_path, data):
    state = data.draw(mutations(real_gan_ckpt))
    path = write(tmp_path / "c", state)
    for resume in (False, True):
        try:
            ckpt = checkpoint.load(path, resume=resume)
        except CheckpointError as e:
            assert "\n" not in str(e) and str(e).startswith(str(path))
            continue
        model = checkpoint.model_from_checkpoint(ckpt)
        assert all(torch.isfinite(p).all() for p in model.parameters())
        result = invoke("generate", path, "--n", "4", "--out", tmp_path / "g.npy")
        check(result)
