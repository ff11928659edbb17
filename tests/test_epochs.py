"""epochs.py: the learning rate of every step is a pure function of the config and the step."""

import pytest

from mnistcnn.config import TrainConfig
from mnistcnn.epochs import lr_at


def test_onecycle_rises_then_anneals():
    cfg = TrainConfig(lr=1e-2, schedule="onecycle", warmup=0.2)
    lrs = [lr_at(cfg, s, 100, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-2 / 25)
    assert max(lrs) == pytest.approx(1e-2) and lrs.index(max(lrs)) == 20
    assert lrs[-1] < 1e-4 and all(a >= b for a, b in zip(lrs[20:], lrs[21:]))


def test_step_and_constant_schedules():
    cfg = TrainConfig(lr=1.0, schedule="step", step_every=2, step_gamma=0.1)
    assert [lr_at(cfg, s, 60, 10) for s in (0, 19, 20, 45)] == pytest.approx([1, 1, 0.1, 0.01])
    assert lr_at(TrainConfig(lr=0.5, schedule="none"), 99, 100, 10) == 0.5
