"""Property tests: the config loader and the image reading/preprocessing either give a result that holds what
was asked, or raise the project's error type as one line naming the problem — whatever they are fed.
Deterministic (derandomize): the same cases on every run and every pytest-xdist worker."""

import math
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mnistcnn.config import TrainConfig, from_dict, load_config, validate
from mnistcnn.errors import ConfigError, MnistcnnError

KEYS = [*TrainConfig.model_fields, "epoch", "lr-max", "", "batch size"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
PROPS = settings(max_examples=300, deadline=None, derandomize=True)
FILES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def one_line(e: MnistcnnError) -> str:
    text = str(e)
    assert text and "\n" not in text and len(text) < 1000 and "Traceback" not in text
    return text


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@PROPS
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_config_values_are_taken_exactly_or_refused_naming_a_key(values):
    try:
        cfg = from_dict(values)
    except ConfigError as e:
        line = one_line(e)
        named = [k for k in values if repr(k) in line or (k and k in line)]
        assert named or "mean and std" in line, line  # the message names a key that was given
        return
    assert validate(cfg) is cfg
    for key, value in values.items():
        want = None if isinstance(value, str) and value.lower() == "none" else value
        assert same(getattr(cfg, key), want) or getattr(cfg, key) == float(want), key
    for key in ("lr", "momentum", "weight_decay", "warmup", "step_gamma"):
        assert math.isfinite(getattr(cfg, key))  # nothing non-finite gets through
    assert cfg.std is None or cfg.std > 0


@FILES
@given(st.text(alphabet=string.printable + "é€\x00", max_size=200))
def test_config_files_load_or_fail_in_one_line(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(path)
    except ConfigError as e:
        one_line(e)
    else:
        assert isinstance(cfg, TrainConfig) and cfg.epochs >= 1


@FILES
@given(st.binary(max_size=300))
def test_binary_config_files_load_or_fail_in_one_line(tmp_path, blob):
    path = tmp_path / "c.toml"
    path.write_bytes(blob)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert str(path) in one_line(e)
    else:
        assert isinstance(cfg, TrainConfig)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 40)), elements=st.floats(0, 1)))
def test_image_preprocessing_gives_an_mnist_digit_or_one_line(gray):
    from mnistcnn.images import extract

    try:
        out = extract(gray).digits
    except MnistcnnError as e:
        one_line(e)
        assert (
            min(gray.shape) < 2 or gray.max() - gray.min() < 0.5 or "no digit" in str(e) or "edges" in str(e)
        )
        return
    assert out.shape == (1, 28, 28) and out.min() >= 0 and out.max() <= 1 and np.isfinite(out).all()


@FILES
@given(st.binary(max_size=400))
def test_image_files_read_or_fail_in_one_line(tmp_path, blob):
    from mnistcnn.images import load_gray

    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + blob if blob[:1] == b"\x00" else blob)
    try:
        gray = load_gray(path)
    except MnistcnnError as e:
        assert str(path) in one_line(e)
    else:
        assert gray.ndim == 2 and gray.min() >= 0 and gray.max() <= 1


@pytest.mark.parametrize("key", sorted(TrainConfig.model_fields))
def test_every_key_refuses_a_list(key):
    with pytest.raises(ConfigError, match=f"^{key} must be"):
        from_dict({key: [1]})
