"""On the real, full MNIST beside the checkout (../shared/data); skipped where it is absent."""

import pytest

from mnistcnn import data
from mnistcnn.config import load_config
from mnistcnn.report import PlainReporter
from mnistcnn.train import train

CONFIGS = data.Path(__file__).resolve().parents[1] / "configs"


def test_full_mnist_has_the_canonical_digests(full_mnist):
    data.verify(full_mnist)  # canonical sha256, no override
    images, labels = data.load_split(full_mnist, train=True)
    assert images.shape == (60_000, 28, 28) and labels.bincount().tolist()[1] == 6742


@pytest.mark.slow
def test_fast_recipe_reaches_99_percent(full_mnist, tmp_path):
    cfg = load_config(CONFIGS / "fast.toml", {"device": "cpu"})
    result = train(cfg, full_mnist, tmp_path / "run", PlainReporter(stream=open("/dev/null", "w")))  # noqa: SIM115
    assert result["test_acc"] >= 0.99
