import subprocess
import sys

import pytest

from mnistcnn import config
from mnistcnn.config import ENGINE_KEYS, RECIPE_KEYS, TrainConfig, from_dict, load_config, validate
from mnistcnn.errors import ConfigError


def test_defaults_are_valid_and_normalised():
    cfg = load_config()
    assert cfg == TrainConfig()
    assert cfg.normalization() == (0.1307, 0.3081)
    assert validate(cfg) is cfg


def test_precedence_defaults_file_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 7\nbatch_size = 64\n")
    cfg = load_config(path, {"epochs": 2, "lr": None})
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (2, 64, TrainConfig().lr)


def test_lecture_config_is_the_lecture_recipe():
    cfg = load_config("lecture")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.schedule) == (10, 10, 1e-5, "adam", "none")
    assert cfg.mean is None and cfg.std is None and cfg.normalization() == (0.0, 1.0)
    assert cfg.shuffle and cfg.val_split == 0 and cfg.precision == "fp32"


@pytest.mark.parametrize("name", ["lecture", "fast"])
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert cfg != TrainConfig()  # each file changes something, and what it lists arrived
    assert cfg.epochs in (1, 10)


# (TOML text, what the one-line error must say). Each row is a row of docs/reliability-A.md.
BAD_TOML = [
    ("epoch = 3", "unknown key 'epoch'"),
    ("batch-size = 3", "did you mean 'batch_size'"),
    ("epochs = '3'", "epochs must be an integer > 0 and <= 10000; got str '3'"),
    ("epochs = 2.5", "epochs must be an integer > 0 and <= 10000; got float 2.5"),
    ("epochs = true", "epochs must be an integer > 0 and <= 10000; got bool True"),
    ("epochs = 0", "epochs must be > 0 and <= 10000; got 0"),
    ("epochs = 1000000000000", "epochs must be > 0 and <= 10000; got 1000000000000"),
    ("batch_size = -1", "batch_size must be > 0 and <= 60000; got -1"),
    ("batch_size = 2000000000", "batch_size must be > 0 and <= 60000; got 2000000000"),
    ("batch_size = 256\ntrain_limit = 100", "batch_size 256 is larger than train_limit 100"),
    ("lr = 0", "lr must be > 0 and <= 10; got 0"),
    ("lr = -1e-3", "lr must be > 0 and <= 10"),
    ("lr = 100.0", "lr must be > 0 and <= 10; got 100.0"),
    ("lr = nan", "lr must be a finite number > 0 and <= 10; got nan"),
    ("lr = inf", "lr must be a finite number > 0 and <= 10; got inf"),
    ("lr = true", "lr must be a finite number > 0 and <= 10; got bool True"),
    ("lr = '1e-3'", "lr must be a finite number > 0 and <= 10; got str '1e-3'"),
    ("optimizer = 'rmsprop'", "optimizer must be one of adam, sgd; got 'rmsprop'"),
    ("optimizer = 1", "optimizer must be one of adam, sgd; got 1"),
    ("momentum = 1.0", "momentum must be >= 0 and < 1; got 1.0"),
    ("momentum = -inf", "momentum must be a finite number >= 0 and < 1; got -inf"),
    ("weight_decay = -0.1", "weight_decay must be >= 0 and <= 1"),
    ("weight_decay = nan", "weight_decay must be a finite number"),
    ("schedule = 'cosine'", "schedule must be one of none, onecycle, step"),
    ("warmup = 1", "warmup must be >= 0 and < 1; got 1"),
    ("warmup = nan", "warmup must be a finite number"),
    ("step_every = 0", "step_every must be > 0 and <= 10000"),
    ("step_gamma = 0", "step_gamma must be > 0 and <= 1"),
    ("step_gamma = 10", "step_gamma must be > 0 and <= 1; got 10"),
    ("mean = nan", "mean must be a finite number >= -1 and <= 1; got nan"),
    ("mean = 'x'", "mean must be a finite number or 'none' >= -1 and <= 1; got str 'x'"),
    ("mean = 'none'", "set both mean and std"),
    ("std = inf", "std must be a finite number >= 0.001 and <= 100; got inf"),
    ("std = 0", "std must be >= 0.001 and <= 100; got 0"),
    ("std = -0.3", "std must be >= 0.001"),
    ("activation = 'gelu'", "activation must be one of relu, sigmoid, tanh"),
    ("shuffle = 1", "shuffle must be true or false; got int 1"),
    ("shuffle = 'yes'", "shuffle must be true or false; got str 'yes'"),
    ("val_split = -1", "val_split must be >= 0 and <= 59999"),
    ("val_split = 60000", "val_split must be >= 0 and <= 59999; got 60000"),
    ("train_limit = -5", "train_limit must be > 0 and <= 60000"),
    ("train_limit = 'all'", "train_limit must be an integer or 'none' > 0 and <= 60000; got str 'all'"),
    ("seed = -1", "seed must be >= 0 and <= 9_223_372_036_854_775_807; got -1"),
    ("seed = 1.5", "seed must be an integer"),
    ("device = 'tpu'", "unknown device 'tpu'"),
    ("device = 'meta'", "unknown device 'meta'"),
    ("device = 3", "device must be auto, cpu, cuda, cuda:N or mps; got int 3"),
    ("precision = 'fp8'", "precision must be one of auto, fp32, bf16, fp16"),
    ("loader = 'dali'", "loader must be one of tensor, torchvision"),
    ("eval_batch_size = 0", "eval_batch_size must be > 0 and <= 100_000"),
    ("eval_batch_size = 10000000", "eval_batch_size must be > 0 and <= 100_000; got 10000000"),
    ("channels_last = true", "channels_last must be one of auto, on, off; got True"),
    ("compile = 'no'", "compile must be true or false"),
    ("log_every = -1", "log_every must be >= 0 and <= 1_000_000"),
    ("epochs = [1, 2]", "epochs must be an integer > 0 and <= 10000; got list"),
    ("[epochs]\nx = 1", "epochs must be an integer > 0 and <= 10000; got dict"),
    ("epochs = [", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TOML, ids=[t.split("\n")[0] for t, _ in BAD_TOML])
def test_bad_config_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    line = str(e.value)
    assert message in line and "\n" not in line
    assert "not valid TOML" in line or f"in {path}" in line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"epochs": 10**12}, "epochs must be > 0 and <= 10000; got 1000000000000"),
        ({"batch_size": 2_000_000_000}, "batch_size must be > 0 and <= 60000; got 2000000000"),
        ({"lr": float("nan")}, "lr must be a finite number > 0 and <= 10; got nan"),
        ({"seed": 2**64}, "seed must be >= 0"),
        ({"batch_size": 64, "train_limit": 10}, "batch_size 64 is larger than train_limit 10"),
    ],
)
def test_bad_flags_name_the_key(flags, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, flags)
    assert str(e.value).startswith(message) and "(in " not in str(e.value)


def test_flag_fixes_what_the_file_got_wrong_only_when_valid_together(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("batch_size = 64\ntrain_limit = 32\n")
    with pytest.raises(ConfigError, match="batch_size 64 is larger than train_limit 32"):
        load_config(path)
    assert load_config(path, {"batch_size": 32}).batch_size == 32


def test_bounds_accept_their_edges():
    cfg = from_dict(
        {"epochs": 10_000, "batch_size": 60_000, "lr": 10, "seed": 2**63 - 1, "std": 1e-3, "mean": -1.0}
    )
    assert (cfg.epochs, cfg.lr, cfg.seed) == (10_000, 10.0, 2**63 - 1)
    assert from_dict({"mean": "None", "std": "none"}).normalization() == (0.0, 1.0)
    assert (
        from_dict({"device": "cuda:3"}).device == "cuda:3" and from_dict({"device": " CPU"}).device == " CPU"
    )


def test_ints_are_accepted_for_floats(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("lr = 1\n")
    cfg = load_config(path)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_assignment_is_checked_too():
    cfg = TrainConfig()
    with pytest.raises(ValueError, match="epochs"):
        cfg.epochs = "3"
    assert cfg.epochs == 5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1, 2], "the config must be a table of keys; got list"),
        ("epochs", "the config must be a table of keys; got str"),
        ({1: 2}, "unknown key 1"),
        ({"x" * 500: 1}, "unknown key 'xxxx"),
    ],
)
def test_config_that_is_not_a_table(values, message):
    with pytest.raises(ConfigError, match=message) as e:
        from_dict(values, source="ckpt.pt")
    assert len(str(e.value)) < 400


def test_missing_unreadable_and_folder_config(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe epochs = 3")
    with pytest.raises(ConfigError, match="not valid TOML|cannot read"):
        load_config(tmp_path / "bin.toml")


def test_recipe_and_engine_keys_come_from_one_place():
    fields = set(TrainConfig.model_fields)
    assert set(RECIPE_KEYS) | set(ENGINE_KEYS) == fields and not set(RECIPE_KEYS) & set(ENGINE_KEYS)
    assert {"batch_size", "lr", "seed", "mean", "std", "val_split", "train_limit"} <= set(RECIPE_KEYS)
    assert {"epochs", "device", "precision", "eval_batch_size", "log_every"} <= set(ENGINE_KEYS)
    assert all(TrainConfig.model_fields[k].description for k in fields)  # every key says why


def test_every_key_has_a_requirement_in_words():
    for key in TrainConfig.model_fields:
        kind, bounds = config.requirement(key)
        assert kind
        if TrainConfig.model_fields[key].annotation in (int, float):
            assert "<=" in bounds or "<" in bounds  # every number is bounded above


def test_help_does_not_import_pydantic():
    code = (
        "import sys, runpy; sys.argv=['mnistcnn','--help']\ntry: runpy.run_module('mnistcnn', run_name='__main__')\n"
        "except SystemExit: pass\nprint('PYDANTIC', 'pydantic' in sys.modules, 'mnistcnn.config' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "PYDANTIC False False" in out.stdout, out.stdout + out.stderr
