"""evaluate.py: loss summed then divided by the set size, accuracy, per-class accuracy and the confusion matrix."""

import pytest
import torch
import torch.nn.functional as F

from mnistcnn.evaluate import evaluate


class Fixed(torch.nn.Module):
    """A 'model' that returns the logits it was built with, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0, 0, 0].long()]


def test_metrics_match_a_hand_count():
    torch.manual_seed(0)
    logits = torch.randn(25, 10)
    labels = torch.randint(0, 10, (25,))
    images = torch.arange(25, dtype=torch.float32).view(25, 1, 1, 1).expand(25, 1, 2, 2).contiguous()
    m = evaluate(Fixed(logits), images, labels, batch_size=7)  # 7: batches that don't divide the set
    pred = logits.argmax(1)
    assert m["n"] == 25
    assert m["accuracy"] == pytest.approx((pred == labels).float().mean().item())
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    confusion = torch.zeros(10, 10, dtype=torch.long)
    for t, p in zip(labels, pred):
        confusion[t, p] += 1
    assert m["confusion"] == confusion.tolist()
    for digit in range(10):
        total = int((labels == digit).sum())
        hits = int(((labels == digit) & (pred == digit)).sum())
        assert m["per_class"][digit] == pytest.approx(hits / total if total else 0.0, abs=1e-6)
