"""The step engine's knobs: graph length for short runs, an explicit chunk, and no accuracy kernels."""

import pytest
import torch

from mnistcnn import data
from mnistcnn.config import TrainConfig
from mnistcnn.model import MyNet
from mnistcnn.stepper import Stepper, chunk_for, make_optimizer

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


def test_chunk_for_never_exceeds_the_steps_of_an_epoch():
    assert chunk_for(10, CUDA) == 64 and chunk_for(256, CUDA) == 8 and chunk_for(4096, CUDA) == 1
    assert chunk_for(10, CUDA, steps=6) == 6  # a 64-step graph would be captured and never replayed
    assert chunk_for(10, CUDA, steps=0) == 1  # fewer images than one batch: the single-step graph
    assert chunk_for(10, CUDA, steps=1000) == 64
    assert chunk_for(10, CPU) == chunk_for(10, CPU, steps=6) == 1


def train_twice(mnist_root, **knobs):
    images, labels = data.load_split(mnist_root, train=True)
    x = data.to_device(images[:256], CPU, 0.1307, 0.3081)
    torch.manual_seed(0)
    model = MyNet()
    opt = make_optimizer(TrainConfig(lr=1e-3), model.parameters(), CPU, capturable=False)
    stepper = Stepper(model, opt, x, labels[:256], CPU, "fp32", 32, graphs=False, **knobs)
    losses, correct = stepper.steps(torch.arange(256), [1e-3] * 8)
    return losses, int(correct), [p.detach().clone() for p in model.parameters()]


def test_without_accuracy_kernels_the_training_is_the_same(mnist_root):
    counted = train_twice(mnist_root)
    uncounted = train_twice(mnist_root, count_correct=False)
    assert counted[1] > 0 and uncounted[1] == 0
    torch.testing.assert_close(uncounted[0], counted[0], rtol=0, atol=0)
    for a, b in zip(uncounted[2], counted[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_chunk_is_one_without_graphs(mnist_root):
    images, labels = data.load_split(mnist_root, train=False)
    model = MyNet()
    opt = make_optimizer(TrainConfig(), model.parameters(), CPU, capturable=False)
    assert Stepper(model, opt, images, labels, CPU, "fp32", 32, graphs=False, chunk=16).chunk == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_explicit_chunk_sets_the_captured_graphs(mnist_root):
    images, labels = data.load_split(mnist_root, train=True)
    x = data.to_device(images, CUDA, 0.1307, 0.3081)
    model = MyNet().to(CUDA)
    opt = make_optimizer(TrainConfig(), model.parameters(), CUDA, capturable=True)
    stepper = Stepper(model, opt, x, labels.to(CUDA), CUDA, "fp32", 32, graphs=True, chunk=5)
    assert stepper.chunk == 5 and sorted(stepper.graphs) == [1, 5]
    losses, _ = stepper.steps(torch.arange(160, device=CUDA), [1e-3] * 5, torch.full((5,), 1e-3, device=CUDA))
    assert losses.shape == (5,) and bool(torch.isfinite(losses).all())


def test_adam_takes_its_betas_from_the_config():
    from mnistcnn.config import load_config
    from mnistcnn.errors import ConfigError

    cfg = load_config(None, {"beta1": 0.7, "beta2": 0.9})
    opt = make_optimizer(cfg, MyNet().parameters(), CPU, capturable=False)
    assert opt.param_groups[0]["betas"] == (0.7, 0.9)
    assert make_optimizer(TrainConfig(), MyNet().parameters(), CPU, False).param_groups[0]["betas"] == (
        0.9,
        0.999,
    )
    with pytest.raises(ConfigError, match="beta1 must be >= 0 and < 1"):
        load_config(None, {"beta1": 1.0})
