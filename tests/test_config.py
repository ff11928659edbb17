from pathlib import Path

import pytest

from mnistcnn.config import TrainConfig, load_config
from mnistcnn.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_valid_and_normalised():
    cfg = load_config()
    assert cfg == TrainConfig()
    assert cfg.normalization() == (0.1307, 0.3081)


def test_precedence_defaults_file_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 7\nbatch_size = 64\n")
    cfg = load_config(path, {"epochs": 2, "lr": None})
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (2, 64, TrainConfig().lr)


def test_lecture_config_is_the_lecture_recipe():
    cfg = load_config(CONFIGS / "lecture.toml")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.schedule) == (10, 10, 1e-5, "adam", "none")
    assert cfg.mean is None and cfg.std is None and cfg.normalization() == (0.0, 1.0)
    assert cfg.shuffle and cfg.val_split == 0 and cfg.precision == "fp32"


@pytest.mark.parametrize("name", ["lecture.toml", "fast.toml"])
def test_shipped_configs_load(name):
    load_config(CONFIGS / name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch = 3", "unknown key 'epoch'"),
        ("batch-size = 3", "did you mean 'batch_size'"),
        ("epochs = '3'", "'epochs' must be int"),
        ("epochs = 2.5", "'epochs' must be int"),
        ("shuffle = 1", "'shuffle' must be bool"),
        ("lr = true", "'lr' must be float"),
        ("optimizer = 'rmsprop'", "optimizer must be one of adam, sgd"),
        ("schedule = 'cosine'", "schedule must be one of"),
        ("epochs = 0", "epochs must be > 0"),
        ("batch_size = -1", "batch_size must be > 0"),
        ("lr = 0", "lr must be > 0"),
        ("train_limit = -5", "train_limit must be > 0"),
        ("mean = 'none'", "set both mean and std"),
        ("epochs = [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_ints_are_accepted_for_floats(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("lr = 1\n")
    assert load_config(path).lr == 1.0
