"""GPU paths: run where CUDA is visible (the device machine), skipped elsewhere. Their logic is also covered on
the CPU by test_train.py (chunked steps, partial last batch, loader equivalence)."""

import pytest
import torch

from mnistcnn import data
from mnistcnn.config import TrainConfig, load_config
from mnistcnn.distributed import World
from mnistcnn.epochs import lr_at, resident_epoch
from mnistcnn.model import MyNet
from mnistcnn.report import PlainReporter
from mnistcnn.stepper import Stepper, make_optimizer
from mnistcnn.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def epoch_losses(mnist_root, graphs: bool, batch_size: int, train_limit: int):
    cuda = torch.device("cuda")
    cfg = TrainConfig(batch_size=batch_size, lr=2e-3, schedule="onecycle")
    images, labels = data.load_split(mnist_root, train=True)
    x = data.to_device(images[:train_limit], cuda, 0.1307, 0.3081)
    torch.manual_seed(0)
    model = MyNet().to(cuda)
    opt = make_optimizer(cfg, model.parameters(), cuda, capturable=True)  # same tensor-LR Adam both ways
    stepper = Stepper(model, opt, x, labels[:train_limit].to(cuda), cuda, "fp32", batch_size, graphs)
    assert bool(stepper.graphs) == graphs
    steps = -(-train_limit // batch_size)
    lrs = [lr_at(cfg, s, steps, steps) for s in range(steps)]
    table = torch.tensor(lrs, device=cuda) if graphs else None
    perm = data.epoch_permutation(train_limit, 0, 0).to(cuda)
    # a replayed graph returns the same static tensors every time: copy each chunk's result before the next
    out = [
        (loss.clone(), int(c))
        for loss, c in resident_epoch(stepper, perm, batch_size, 0, lrs, table, World.single())
    ]
    losses = torch.cat([loss for loss, _ in out]).cpu()
    correct = sum(c for _, c in out)
    return losses, correct, [p.detach().cpu() for p in model.parameters()]


@pytest.mark.parametrize("batch_size", [10, 64])
def test_cuda_graph_replay_trains_like_eager(mnist_root, batch_size):
    eager = epoch_losses(
        mnist_root, False, batch_size, 1005
    )  # 1005: chunks, single steps and a partial batch
    graph = epoch_losses(mnist_root, True, batch_size, 1005)
    assert len(graph[0]) == len(eager[0]) == -(-1005 // batch_size)
    torch.testing.assert_close(graph[0], eager[0], rtol=1e-4, atol=1e-5)
    # cuDNN's kernels are not bit-deterministic and Adam rescales tiny gradients to full steps: a few weights
    # differ by ~lr/10 (seen on an H100: 58 of 18,432 conv2 weights, at most 3.4e-4)
    for a, b in zip(graph[2], eager[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)


def test_train_on_cuda_end_to_end(mnist_root, tmp_path):
    cfg = load_config(None, {"epochs": 2, "batch_size": 32, "device": "cuda"})
    result = train(cfg, mnist_root, tmp_path / "run", PlainReporter())
    assert result["device"].startswith("cuda") and result["test_acc"] > 0.85
