import copy
import functools
import os
import pickle
import random

import pytest
import torch

from mnistcnn import checkpoint
from mnistcnn.config import TrainConfig
from mnistcnn.errors import CheckpointError
from mnistcnn.model import MyNet


def make_state(model=None):
    model = model or MyNet()
    return {"model": model.state_dict(), "config": TrainConfig().to_dict(), "epoch": 1, "metrics": []}


def test_roundtrip_rebuilds_the_model(tmp_path):
    torch.manual_seed(1)
    model = MyNet()
    checkpoint.save(tmp_path / "last.pt", make_state(model))
    assert not [p for p in tmp_path.iterdir() if p.name != "last.pt"]  # no temporary file left behind
    ckpt = checkpoint.load(tmp_path / "last.pt")
    assert ckpt["version"] == checkpoint.FORMAT_VERSION
    rebuilt = checkpoint.model_from_checkpoint(ckpt)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), model.eval()(x))
    assert checkpoint.normalization(ckpt) == (0.1307, 0.3081)
    assert checkpoint.load(tmp_path)["epoch"] == 1  # a run folder resolves to its last.pt


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({**make_state(), "extra": Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="not a plain mnistcnn checkpoint"):
        checkpoint.load(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable checkpoint"),
        (os.urandom(4096), "not a readable checkpoint"),
        (pickle.dumps({"model": 1}), "not a readable checkpoint|not a plain"),
    ],
)
def test_garbage_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_random_bytes_are_clear_errors(tmp_path):
    # os.urandom once made torch's weights_only unpickler raise IndexError (a traceback, not a clear line)
    path = tmp_path / "x.pt"
    for seed in range(300):
        rng = random.Random(seed)
        path.write_bytes(rng.randbytes(rng.choice([1, 7, 64, 4096])))
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            checkpoint.load(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save(path, make_state())
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)


def test_newer_version_and_wrong_shape(tmp_path):
    path = tmp_path / "new.pt"
    torch.save({**make_state(), "version": checkpoint.FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="newer than this mnistcnn"):
        checkpoint.load(path)
    state = make_state()
    state["model"]["fc1.weight"] = torch.zeros(10, 100)
    checkpoint.save(path, state)
    with pytest.raises(
        CheckpointError, match=r"model.fc1.weight must be a dense float tensor of shape \(10, 2304\)"
    ):
        checkpoint.load(path)


def test_missing_and_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mnistcnn checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {**make_state(), "epoch": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match="(?i)no space left"):
        checkpoint.save(path, {**make_state(), "epoch": 2})
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_read_only_folder_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import builtins

    path = tmp_path / "last.pt"
    checkpoint.save(path, {**make_state(), "epoch": 1})
    real_open = builtins.open

    def read_only(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wxa"):  # the atomic write creates its temporary file with "xb"
            raise PermissionError(13, "Permission denied")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(CheckpointError, match="permission denied"):
        checkpoint.save(path, {**make_state(), "epoch": 2})
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 1


# --- the schema: every loader (eval, predict, failures, show, summary, export) and --resume ---


@functools.cache
def _trained(optimizer: str, epochs: int) -> dict:
    from mnistcnn.stepper import make_optimizer

    torch.manual_seed(0)
    cfg = TrainConfig(epochs=epochs, batch_size=8, optimizer=optimizer, device="cpu")
    model = MyNet()
    opt = make_optimizer(cfg, model.parameters(), torch.device("cpu"), capturable=False)
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(
            model(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,))
        ).backward()
        opt.step()
    record = {"type": "epoch", "epoch": 1, "train_loss": 2.0, "seconds": 0.5}
    return checkpoint.build(model, opt, cfg, 1, 0, 4, [record], 0)


def trained_state(optimizer: str = "adam", epochs: int = 2) -> dict:
    """A checkpoint as Trainer writes it after one of `epochs` epochs of 4 steps (random data, no MNIST)."""
    return copy.deepcopy(_trained(optimizer, epochs))


def saved(tmp_path, state) -> str:
    path = tmp_path / "last.pt"
    torch.save({"version": checkpoint.FORMAT_VERSION, **state}, path)
    return path


def mutate(state: dict, where: str, value) -> dict:
    """Set (or with value DELETE remove) a path: "config/mean", "model/fc1.bias", "optimizer/param_groups/0/lr"."""
    state = copy.deepcopy(state)
    *parents, last = where.split("/")
    node = state
    for part in parents:
        node = (
            node[int(part)] if isinstance(node, list) or part.isdigit() and int(part) in node else node[part]
        )
    key = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return state


DELETE = object()
NAN = float("nan")

# (field, value, what the one line says, only --resume refuses it). Rows of docs/reliability-A.md.
BAD_FIELDS = [
    ("config", [1, 2], "config must be a table of keys; got list", False),
    ("config", "relu", "config must be a table of keys; got str", False),
    ("config/mean", "0.5", "mean must be a finite number or 'none' >= -1 and <= 1; got str '0.5'", False),
    ("config/mean", NAN, "mean must be a finite number >= -1 and <= 1; got nan", False),
    ("config/std", 0.0, "std must be >= 0.001 and <= 100; got 0.0", False),
    ("config/std", float("inf"), "std must be a finite number", False),
    ("config/activation", "gelu", "activation must be one of relu, sigmoid, tanh", False),
    ("config/epochs", 10**12, "epochs must be > 0 and <= 10000", False),
    ("config/bogus", 1, "unknown key 'bogus'", False),
    ("model", [1], "model must be MyNet's state dict; got list", False),
    ("model/conv1.weight", DELETE, "model has no conv1.weight", False),
    (
        "model/conv1.weight",
        torch.zeros(32, 1, 5, 5),
        "model.conv1.weight must be a dense float tensor of shape (32, 1, 3, 3)",
        False,
    ),
    ("model/conv2.bias", [0.0] * 64, "model.conv2.bias must be a tensor of shape (64,); got list", False),
    (
        "model/fc1.bias",
        torch.zeros(10, dtype=torch.int64),
        "model.fc1.bias must be a dense float tensor",
        False,
    ),
    ("model/fc1.bias", torch.full((10,), NAN), "holds NaN weights (fc1.bias)", False),
    ("model/conv1.bias", torch.full((32,), float("inf")), "holds infinite weights (conv1.bias)", False),
    ("model/extra.weight", torch.zeros(3), "has an entry MyNet does not have: 'extra.weight'", False),
    ("version", "1", "version must be 1..1", False),
    ("version", 0, "version must be 1..1", False),
    ("epoch", "one", "epoch must be an integer in 0..2; got 'one'", False),
    ("epoch", 3, "epoch must be an integer in 0..2; got 3", False),
    ("step", 10**9, "step must be an integer in 0..", False),
    ("step", -1, "step must be an integer in 0..", False),
    ("batch", True, "batch must be an integer in 0..", False),
    ("best", NAN, "best must be a finite number", False),
    ("metrics", {"a": 1}, "metrics must be a list of records; got dict", False),
    ("metrics/0", "x", "metrics[0] must be a record", False),
    ("metrics/0/seconds", "fast", "metrics[0].seconds must be a finite number", False),
    ("optimizer", [], "optimizer must be a dict with state and param_groups; got list", False),
    ("optimizer/param_groups", [], "optimizer.param_groups must be a list of one dict", False),
    ("optimizer/param_groups/0/lr", "fast", "optimizer.param_groups[0].lr must be a finite number", False),
    ("optimizer/param_groups/0/lr", NAN, "optimizer.param_groups[0].lr must be a finite number", False),
    (
        "optimizer/param_groups/0/betas",
        (0.9,),
        "optimizer.param_groups[0].betas must be two numbers",
        False,
    ),
    (
        "optimizer/param_groups/0/eps",
        DELETE,
        "optimizer.param_groups[0].eps is missing (not a adam state)",
        False,
    ),
    ("optimizer/param_groups/0/params", [0, 1, 2], "params must be [0, 1, 2, 3, 4, 5]", False),
    (
        "optimizer/param_groups/0/foreach",
        "yes",
        "param_groups[0].foreach must be true, false, null or a number",
        False,
    ),
    ("optimizer/state", [1], "optimizer.state must be a dict; got list", False),
    ("optimizer/state/7", {}, "optimizer.state[7] must map a parameter number 0..5", False),
    (
        "optimizer/state/0/exp_avg",
        torch.zeros(3),
        "optimizer.state[0].exp_avg must be a dense float tensor of shape (32, 1, 3, 3)",
        False,
    ),
    (
        "optimizer/state/4/exp_avg_sq",
        torch.full((10, 2304), NAN),
        "optimizer.state[4].exp_avg_sq holds NaN values",
        False,
    ),
    ("optimizer/state/0/step", "x", "optimizer.state[0].step must be a finite number", False),
    (
        "optimizer/state/0/momentum_buffer",
        torch.zeros(1),
        "has an entry a adam state does not have: 'momentum_buffer'",
        False,
    ),
    ("optimizer", DELETE, "optimizer is missing", True),
    ("epoch", DELETE, "epoch is missing", True),
    ("step", DELETE, "step is missing", True),
    ("epoch", 0, "step 4 does not follow from epoch 0 and batch 0", True),
    ("batch", 2, "step 4 does not follow from epoch 1 and batch 2", True),
    ("metrics", [], "metrics holds 0 epoch records, but epoch is 1", True),
    ("partial", [1], "partial must be a dict; got list", True),
]


@pytest.mark.parametrize(
    ("where", "value", "message", "resume_only"), BAD_FIELDS, ids=[f"{r[0]}-{r[2][:30]}" for r in BAD_FIELDS]
)
def test_schema_names_the_field(tmp_path, where, value, message, resume_only):
    path = saved(tmp_path, mutate(trained_state(), where, value))
    if resume_only:
        assert checkpoint.load(path)["model"]  # what eval and show need is there
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path, resume=True)
    line = str(e.value)
    assert message in line and line.startswith(str(path)) and "\n" not in line and len(line) < 600


def test_a_trained_checkpoint_passes_both_checks(tmp_path):
    for optimizer in ("adam", "sgd"):
        state = trained_state(optimizer)
        ckpt = checkpoint.load(saved(tmp_path, state), resume=True)
        assert ckpt["epoch"] == 1 and ckpt["step"] == 4
        model = checkpoint.model_from_checkpoint(ckpt)
        torch.testing.assert_close(model.fc1.bias, state["model"]["fc1.bias"])


def test_mid_epoch_position_and_partial(tmp_path):
    state = {**trained_state(), "epoch": 1, "batch": 2, "step": 6}
    state["partial"] = {"losses": [0.5, 0.4], "correct": 9, "seconds": 0.1}
    assert checkpoint.load(saved(tmp_path, state), resume=True)["batch"] == 2
    state["partial"]["losses"] = [0.5]
    with pytest.raises(CheckpointError, match=r"partial.losses must be a list of 2 losses"):
        checkpoint.load(saved(tmp_path, state), resume=True)
    state["partial"]["losses"] = [0.5, NAN]
    with pytest.raises(CheckpointError, match=r"partial.losses must be a finite number"):
        checkpoint.load(saved(tmp_path, state), resume=True)


def test_optimizer_of_another_kind_is_refused(tmp_path):
    state = trained_state("sgd")
    state["config"]["optimizer"] = "adam"
    with pytest.raises(CheckpointError, match=r"param_groups\[0\].betas is missing \(not a adam state\)"):
        checkpoint.load(saved(tmp_path, state))


def test_position_must_fit_the_training_set():
    from mnistcnn import schema

    ckpt = trained_state()
    schema.check_steps(ckpt, 4)
    with pytest.raises(CheckpointError, match="does not fit this training set"):
        schema.check_steps(ckpt, 63)
