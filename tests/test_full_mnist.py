"""On the real, full MNIST beside the checkout (../shared/data); skipped where it is absent."""

import pytest

from mnistcnn import data


def test_full_mnist_has_the_canonical_digests(full_mnist):
    data.verify(full_mnist)  # canonical sha256, no override
    images, labels = data.load_split(full_mnist, train=True)
    assert images.shape == (60_000, 28, 28) and labels.bincount().tolist()[1] == 6742


@pytest.mark.slow
def test_fast_recipe_reaches_99_percent(fast_recipe_run):
    run, result = fast_recipe_run
    assert result["test_acc"] >= 0.99 and (run / "last.pt").is_file()
