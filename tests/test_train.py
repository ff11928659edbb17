import json
import math

import pytest
import torch

from mnistcnn import checkpoint, data
from mnistcnn.config import TrainConfig, load_config
from mnistcnn.model import MyNet
from mnistcnn.report import PlainReporter
from mnistcnn.stepper import Stepper, make_optimizer
from mnistcnn.train import train


def quiet():
    return PlainReporter(stream=open("/dev/null", "w"))  # noqa: SIM115


def run_steps(cfg, mnist_root, loader, steps):
    """The first `steps` losses of epoch 0 through the given loader, fp32 on the CPU."""
    torch.manual_seed(cfg.seed)
    model = MyNet()
    opt = make_optimizer(cfg, model.parameters(), torch.device("cpu"), capturable=False)
    images, labels = data.load_split(mnist_root, train=True)
    x = data.to_device(images, torch.device("cpu"), *cfg.normalization())
    stepper = Stepper(model, opt, x, labels, torch.device("cpu"), "fp32", cfg.batch_size, graphs=False)
    order = data.epoch_permutation(len(x), cfg.seed, 0)
    if loader == "tensor":
        batches = (
            stepper.steps(order[i : i + cfg.batch_size], [cfg.lr]) for i in range(0, len(x), cfg.batch_size)
        )
    else:
        batches = (
            stepper.train_on(xb, yb)
            for xb, yb in data.torchvision_batches(mnist_root, order, cfg.batch_size, *cfg.normalization())
        )
    return [loss.reshape(-1)[0].item() for loss, _ in (next(batches) for _ in range(steps))]


@pytest.mark.parametrize("mean_std", [(0.1307, 0.3081), (None, None)])
def test_resident_and_torchvision_loaders_give_the_same_losses(mnist_root, mean_std):
    cfg = TrainConfig(batch_size=16, lr=1e-3, mean=mean_std[0], std=mean_std[1])
    tensor = run_steps(cfg, mnist_root, "tensor", 40)
    lecture = run_steps(cfg, mnist_root, "torchvision", 40)
    assert tensor == pytest.approx(lecture, rel=1e-6, abs=1e-7)
    assert tensor[-1] < tensor[0]  # it learns


def test_train_writes_the_run_folder(mnist_root, tmp_path):
    cfg = load_config(None, {"epochs": 2, "batch_size": 32, "val_split": 200, "device": "cpu"})
    result = train(cfg, mnist_root, tmp_path / "run", quiet())
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.json", "env.json", "metrics.jsonl", "last.pt", "best.pt", "loss.png", ".mnistcnn.lock"]
    )
    run_id = checkpoint.load(run / "last.pt")["run_id"]  # the run's identity (resume checks it)
    assert json.loads((run / "config.json").read_text()) == {
        **cfg.to_dict(),
        "recipe": None,
        "run_id": run_id,
    }
    env = json.loads((run / "env.json").read_text())
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["data_source"] == "local"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    batches = [r for r in records if r["type"] == "batch"]
    steps_per_epoch = math.ceil(1800 / 32)
    assert [r["step"] for r in batches] == list(range(1, 2 * steps_per_epoch + 1))
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and all("val_acc" in r for r in epochs)
    assert records[-1]["type"] == "test" and records[-1]["n"] == 1000
    assert result["test_acc"] == records[-1]["test_acc"] > 0.85  # a broken model sits near 0.10
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]


def test_train_limit_and_partial_last_batch(mnist_root, tmp_path):
    cfg = load_config(None, {"epochs": 1, "batch_size": 64, "train_limit": 100, "device": "cpu"})
    train(cfg, mnist_root, tmp_path / "run", quiet())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum('"type":"batch"' in line for line in lines) == 2  # 64 + 36: the last partial batch is trained


def test_chunked_steps_equal_single_steps(mnist_root):
    """K steps in one call (what a CUDA graph replays) train exactly like K separate steps."""
    images, labels = data.load_split(mnist_root, train=True)
    x = data.to_device(images, torch.device("cpu"), 0.1307, 0.3081)
    cfg = TrainConfig(batch_size=8, lr=1e-3)
    results = []
    for k in (1, 4):
        torch.manual_seed(0)
        model = MyNet()
        opt = make_optimizer(cfg, model.parameters(), torch.device("cpu"), capturable=False)
        stepper = Stepper(model, opt, x, labels, torch.device("cpu"), "fp32", 8, graphs=False)
        order = data.epoch_permutation(len(x), 0, 0)
        lrs = [1e-3 * (s + 1) for s in range(12)]
        out = [stepper.steps(order[s * 8 : (s + k) * 8], lrs[s : s + k]) for s in range(0, 12, k)]
        losses = torch.cat([loss for loss, _ in out])
        results.append(
            (losses, sum(int(c) for _, c in out), [p.detach().clone() for p in model.parameters()])
        )
    (l1, c1, p1), (l4, c4, p4) = results
    assert len(l1) == len(l4) == 12 and c1 == c4
    torch.testing.assert_close(l1, l4, rtol=0, atol=0)
    for a, b in zip(p1, p4):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
