"""engine.py: which device, precision and memory format a run gets."""

import pytest
import torch

from mnistcnn.engine import resolve_device, resolve_precision, use_channels_last
from mnistcnn.errors import MnistcnnError


def test_auto_and_cpu_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    assert resolve_device("auto").type in ({expected} if expected else {"cpu", "mps"})
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu0", "cuda:x"])
def test_unknown_devices_are_named(name):
    with pytest.raises(MnistcnnError, match="device"):
        resolve_device(name)


def test_precision_on_the_cpu_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("mnistcnn.engine.cpu_flags", lambda: {"avx2"})
    assert resolve_precision("auto", cpu) == "fp32"  # bf16 is emulated (and slower) without AMX/AVX512-BF16
    monkeypatch.setattr("mnistcnn.engine.cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"


def test_channels_last_is_auto_on_the_cpu_only():
    assert use_channels_last("auto", torch.device("cpu")) is True
    assert use_channels_last("auto", torch.device("cuda", 0)) is False
    assert use_channels_last("off", torch.device("cpu")) is False
    assert use_channels_last("on", torch.device("cuda", 0)) is True
