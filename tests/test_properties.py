"""Property tests: the config loader and the image reading/preprocessing never raise anything but the project's
error type, whatever they are fed."""

import contextlib
import string

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mnistcnn.config import TrainConfig, from_dict, load_config, validate
from mnistcnn.errors import MnistcnnError

KEYS = [*TrainConfig.__dataclass_fields__, "epoch", "lr-max", "", "batch size"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FILES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_config_values_fail_only_with_the_project_error(values):
    with contextlib.suppress(MnistcnnError):
        assert isinstance(validate(from_dict(values)), TrainConfig)


@FILES
@given(st.text(alphabet=string.printable + "é€\x00", max_size=200))
def test_config_files_fail_only_with_the_project_error(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(MnistcnnError):
        load_config(path)


@FILES
@given(st.binary(max_size=300))
def test_binary_config_files_fail_only_with_the_project_error(tmp_path, blob):
    path = tmp_path / "c.toml"
    path.write_bytes(blob)
    with contextlib.suppress(MnistcnnError):
        load_config(path)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 40)), elements=st.floats(0, 1)))
def test_image_preprocessing_fails_only_with_the_project_error(gray):
    from mnistcnn.predict import preprocess

    with contextlib.suppress(MnistcnnError):
        out = preprocess(gray)
        assert out.shape == (28, 28) and out.min() >= 0 and out.max() <= 1


@FILES
@given(st.binary(max_size=400))
def test_image_files_fail_only_with_the_project_error(tmp_path, blob):
    from mnistcnn.predict import load_gray

    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + blob if blob[:1] == b"\x00" else blob)
    with contextlib.suppress(MnistcnnError):
        load_gray(path)
